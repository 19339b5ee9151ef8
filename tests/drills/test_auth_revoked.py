"""The credentials are revoked mid-stream (403), then restored: nothing is
dead-lettered, nothing committed past the first refused record, readiness is
false while it lasts, and delivery resumes on its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    PARTITIONS,
    DrillBridge,
    assert_no_commit_past,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    ready,
    report,
)
from tests.support import (
    TOKEN,
    TestKafka,
    accepted,
    log_events,
    read_all,
    wait_for,
)

AUTH_BACKOFF_S = 0.3


@pytest.mark.parametrize(
    ("records", "revoked_s"),
    [pytest.param(300, 3, id="short"), pytest.param(3000, 30, id="long", marks=pytest.mark.slow)],
)
def test_credentials_revoked_then_restored(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    revoked_s: float,
) -> None:
    produce_stream(drill_cluster, records // 3)
    config = drill_config(drill_cluster, sandbox, "auth", max_buffered_records=records // 6)
    config["delivery"]["retry"]["auth_backoff_ms"] = int(AUTH_BACKOFF_S * 1000)
    log_path = tmp_path / "bridge.log"
    bootstrap = drill_cluster.bootstrap_servers
    with drill_bridge(config, log_path):
        wait_for(lambda: len(accepted(sandbox)) >= records // 6, 60, "first deliveries")
        sandbox.state.token = "revoked"
        produce_stream(drill_cluster, records - records // 3, start=records // 3)
        wait_for(lambda: any(a["status"] == 403 for a in sandbox.state.attempts), 20, "the first 403")
        delivered_before = delivered_seqs(sandbox)
        seq_at = {
            (m.partition(), m.offset()): json.loads(m.value())["seq"]
            for m in read_all(bootstrap, drill_cluster.topic, PARTITIONS)
        }
        deadline, ready_seen = time.monotonic() + revoked_s, []
        while time.monotonic() < deadline:
            ready_seen.append(ready(log_path))
            assert_no_commit_past(drill_cluster, "auth", seq_at, delivered_before)
            time.sleep(0.5)
        assert delivered_seqs(sandbox) == delivered_before, "nothing gets through"
        sandbox.state.token = TOKEN
        restored_at = time.monotonic()
        wait_for(lambda: len(accepted(sandbox)) > len(delivered_before), 30, "delivery to resume")
        resume_s = time.monotonic() - restored_at
        wait_for(lambda: len(delivered_seqs(sandbox)) >= records, 120, "all delivered")
        wait_for(lambda: ready(log_path), 10, "ready again")
    outcome = check_stream(drill_cluster, sandbox, "auth", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    assert ready_seen and not any(ready_seen[1:]), "not ready while the credentials are refused"
    failures = [e for e in log_events(log_path) if e["event"] == "intilery_auth_failed"]
    assert failures and all(e["level"] == "error" and e["status"] == 403 for e in failures)
    # While refused, one request probes per back-off (after those already in flight); the
    # refused span is the sandbox's own, from its first 403 to its last (the test sees the
    # first one only when it next polls).
    refusals = [a["at"] for a in sandbox.state.attempts if a["status"] == 403]
    refused, refused_s = len(refusals), refusals[-1] - refusals[0]
    assert refused <= config["delivery"]["max_in_flight"] + refused_s / AUTH_BACKOFF_S + 2
    report(
        f"4 credentials revoked {revoked_s:g} s",
        outcome,
        resume_s,
        f"{refused} refused probes; not ready throughout; no commit past the first 403",
    )
