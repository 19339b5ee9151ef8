"""The stale-event guard: a rule's max_age skips commands whose event is too
old when they would be sent; they are counted, logged and committed."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    committed_and_ends,
    log_events,
    produce_events,
    sms_event,
    start_bridge,
    write_config,
)


def test_max_age_skips_old_events(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    now_s = time.time()  # odd ones happened three hours ago
    events = [sms_event(seq, 20, now_s - (3 * 3600 if seq % 2 else 60)) for seq in range(20)]
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    config = base_config(cluster, sandbox.url, "stale")
    config["rules"][0]["max_age"] = "2h"
    log_path = tmp_path / "bridge.log"
    assert start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=60) == 0
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(0, 20, 2))
    events = log_events(log_path)
    stale = [e for e in events if e["event"] == "command_stale"]
    assert sorted(e["offset"] for e in stale) == list(range(1, 20, 2))
    assert all(e["rule"] == "abandoned-sms" for e in stale)
    assert [e for e in events if e["event"] == "bridge_summary"][-1]["stale"] == 10
    assert committed_and_ends(cluster.bootstrap_servers, "stale", cluster.topic, 1) == [(20, 20)]
