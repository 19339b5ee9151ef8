"""The stale-event guard: a rule's max_age skips commands whose event is too
old when they would be sent; they are counted, logged and committed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    committed_and_ends,
    log_events,
    produce_events,
    run_cli,
    sms_event,
    start_bridge,
    write_config,
)


def test_max_age_skips_old_events(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    now_s = time.time()  # odd ones happened three hours ago
    events = [sms_event(seq, 20, now_s - (3 * 3600 if seq % 2 else 60)) for seq in range(20)]
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(audit_topic, 1)
    config = base_config(cluster, sandbox.url, "stale", audit_topic=audit_topic)
    config["rules"][0]["max_age"] = "2h"
    log_path = tmp_path / "bridge.log"
    config_path = write_config(tmp_path, config)
    assert start_bridge(config_path, log_path, "--until-caught-up").wait(timeout=60) == 0
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(0, 20, 2))
    events = log_events(log_path)
    stale = [e for e in events if e["event"] == "command_stale"]
    assert sorted(e["offset"] for e in stale) == list(range(1, 20, 2))
    assert all(e["rule"] == "abandoned-sms" for e in stale)
    assert [e for e in events if e["event"] == "bridge_summary"][-1]["stale"] == 10
    assert committed_and_ends(cluster.bootstrap_servers, "stale", cluster.topic, 1) == [(20, 20)]
    # trace tells the skipped command beside the sent ones (it left them out)
    code, out, _ = run_cli(capsys, "trace", "--config", str(config_path), "--user", "C-1", "--output", "json")
    [entry] = json.loads(out)["entries"]
    assert code == 0 and (entry["kind"], entry["source"]["offset"]) == ("stale", 1)
    assert entry["reason"] == "older than 2h (max_age)" and "eventId" not in entry
    code, out, _ = run_cli(capsys, "trace", "--config", str(config_path), "--user", "C-1")
    assert "send_sms ASSET-SMS  not sent (stale): older than 2h (max_age)" in out.splitlines()[1]


def test_a_field_the_event_lacks_is_counted_and_on_missing_decides(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A template of a field the event did not have dropped its key without a word: a
    customer got "Hi !". Now it is logged once per rule and field and counted, and
    ``on_missing: skip`` sends nothing for such an event (the record is still committed)."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    events = [sms_event(seq, 20) for seq in range(10)]
    for event in events[::2]:
        event["customer"]["firstName"] = "Ann"
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    config = base_config(cluster, sandbox.url, "holes")
    config["rules"][0]["on_missing"] = "skip"
    config["rules"][0]["emit"]["properties"] = {"greeting": "Hi {{ customer.firstName }}!"}
    log_path = tmp_path / "bridge.log"
    assert start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=60) == 0
    sent = accepted(sandbox)
    assert sorted(r["body"]["seq"] for r in sent) == list(range(0, 10, 2))
    assert {r["body"]["properties"]["greeting"] for r in sent} == {"Hi Ann!"}
    logged = log_events(log_path)
    incomplete = [e for e in logged if e["event"] == "command_incomplete"]
    assert sorted(e["offset"] for e in incomplete) == list(range(1, 10, 2))
    assert "customer.firstName" in incomplete[0]["reason"] and "Ann" not in str(incomplete)
    missing = [e for e in logged if e["event"] == "template_field_missing"]
    assert [(e["rule"], e["field"], e["on_missing"]) for e in missing] == [
        ("abandoned-sms", "customer.firstName", "skip")
    ]
    assert [e for e in logged if e["event"] == "bridge_summary"][-1]["incomplete"] == 5
    assert committed_and_ends(cluster.bootstrap_servers, "holes", cluster.topic, 1) == [(10, 10)]


def test_replay_dry_run_leaves_out_what_the_replay_would_skip(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The dry run printed the stale SMS the real replay skips (the same with and without
    --ignore-max-age): the preview overstated who would be contacted."""
    from tests.integration.test_replay import replay

    cluster.create_topic(cluster.topic, 1)
    now_s = time.time()
    events = [sms_event(seq, 20, now_s - (3 * 3600 if seq % 2 else 60)) for seq in range(6)]
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    config = base_config(cluster, sandbox.url, "stale-preview")
    config["rules"][0]["max_age"] = "2h"
    path = write_config(tmp_path, config)
    dry = replay(path, cluster.topic, "--from-beginning", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [json.loads(line)["body"]["seq"] for line in dry.stdout.splitlines()] == [0, 2, 4]
    stale = [line for line in dry.stderr.splitlines() if "not sent, stale: older than 2h (max_age)" in line]
    assert [line.split(":")[0] for line in stale] == [f"{cluster.topic}[0]@{o}" for o in (1, 3, 5)]
    assert "3 commands, 3 not sent, 0 would be dead-lettered" in dry.stderr
    every = replay(path, cluster.topic, "--from-beginning", "--dry-run", "--ignore-max-age")
    assert every.returncode == 0 and len(every.stdout.splitlines()) == 6 and "stale" not in every.stderr
    assert accepted(sandbox) == []
