"""The audit topic on the real broker, over real HTTP: one entry per command the sandbox
accepted (its eventId, rule, rules version, source record, trace), keyed by the userId,
the merge fields only with ``audit_include_body``; a dead-lettered record has none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    log_events,
    produce_events,
    read_all,
    run_cli,
    sms_event,
    start_bridge,
    write_config,
)

ROOT = Path(__file__).parents[2]


def test_every_accepted_command_has_one_audit_entry(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With ``audit_include_body`` (the trace test below runs without: no body there)."""
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    cluster.create_topic(audit_topic, 2)
    events = [sms_event(seq, 4) for seq in range(30)]
    events[7]["customer"]["id"] = "C-REFUSED"
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    sandbox.state.set_faults({"reject": {"userId": "C-REFUSED"}})
    config = base_config(cluster, sandbox.url, "audited", audit_topic=audit_topic, audit_include_body=True)
    log_path = tmp_path / "bridge.log"
    assert start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=120) == 0

    logs = log_events(log_path)
    version = next(e["rules_version"] for e in logs if e["event"] == "bridge_started")
    delivered = {(e["partition"], e["offset"]): e for e in logs if e["event"] == "command_delivered"}
    calls = {call["eventId"]: call for call in accepted(sandbox)}
    entries = [
        (m.key().decode(), json.loads(m.value())) for m in read_all(cluster.bootstrap_servers, audit_topic, 2)
    ]
    assert len(calls) == len(entries) == 29  # the refused one: a dead letter, no entry
    assert sorted(entry["eventId"] for _, entry in entries) == sorted(calls)
    for key, entry in entries:
        call, source = calls[entry["eventId"]], entry["source"]
        line = delivered[source["partition"], source["offset"]]
        assert key == entry["userId"] == call["body"]["userId"] == line["userId"]
        assert (entry["rule"], entry["command"], entry["assetId"]) == (
            "abandoned-sms",
            "send_sms",
            "ASSET-SMS",
        )
        assert (entry["rules_version"], entry["trace_id"]) == (version, line["trace_id"])
        assert (entry["status"], entry["attempt"], entry["resent"]) == (200, 1, False)
        assert source["topic"] == cluster.topic and entry["sent_at"].endswith("Z")
        assert entry["body"] == call["body"]


def test_trace_tells_one_customers_story_from_the_audit_and_dead_letter_topics(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_topic = f"{cluster.topic}.audit"
    for topic in (cluster.topic, cluster.dlq, audit_topic):
        cluster.create_topic(topic, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, [sms_event(seq, 5) for seq in range(10)])
    sandbox.state.set_faults({"reject": {"bookingId": "B-6"}})  # C-1's second event: a dead letter
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "told", audit_topic=audit_topic))
    assert start_bridge(config, tmp_path / "bridge.log", "--until-caught-up").wait(timeout=120) == 0
    window = ["--topic", cluster.topic, "--from-offset", "0:1", "--to-offset", "0:1"]
    replayed = subprocess.run(
        [sys.executable, "-m", "bridge", "replay", "--config", str(config), *window],
        capture_output=True,
        text=True,
        env=bridge_env(),
        timeout=120,
        cwd=ROOT,
    )
    assert replayed.returncode == 0, replayed.stderr
    logs = log_events(tmp_path / "bridge.log")
    trace_of = {
        e["offset"]: e["trace_id"]
        for e in logs
        if e["event"] in ("command_delivered", "command_dead_lettered")
    }
    version = next(e["rules_version"] for e in logs if e["event"] == "bridge_started")
    eventids = [call["eventId"] for call in accepted(sandbox) if call["body"]["userId"] == "C-1"]

    code, out, _ = run_cli(capsys, "trace", "--config", str(config), "--user", "C-1", "--output", "json")
    assert code == 0
    story = json.loads(out)
    assert story["user"] == "C-1"
    told = [
        (e["kind"], e["source"]["offset"], e["rule"], e.get("eventId"), e.get("resent"), e["repeat"])
        for e in story["entries"]
    ]
    # By hand: C-1 is seq 1 and 6. Seq 6 was refused (a dead letter, at its event's time,
    # before anything was sent), seq 1 delivered, then replayed: sent again, a repeat.
    assert told == [
        ("dead_letter", 6, "abandoned-sms", None, None, False),
        ("delivered", 1, "abandoned-sms", eventids[0], False, False),
        ("delivered", 1, "abandoned-sms", eventids[1], True, True),
    ]
    dead, first, again = story["entries"]
    assert dead["error_class"] == "rejected" and dead["status"] == 400 and dead["trace_id"] == trace_of[6]
    assert (first["rules_version"], first["trace_id"]) == (version, trace_of[1])
    assert "window" not in first and again["window"]["run"] == "replay"
    assert not {"body", "body_omitted", "bookingId"} & set(first)  # no merge field without audit_include_body
    assert again["window"]["offsets"] == {"0": [1, 2]}

    code, out, _ = run_cli(capsys, "trace", "--config", str(config), "--user", "C-1")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "C-1: 3 entries" and len(lines) == 4
    assert "dead-lettered rejected" in lines[1] and lines[3].endswith("[resent, REPEAT]")
    assert f"from {cluster.topic}[0]@1" in lines[2] and "send_sms ASSET-SMS" in lines[2]
    # the event time that was sent (the rule's occurredAt), not the record's own time
    assert first["event_time"] == "2026-11-01T00:00:00.000Z"
    assert "(event 2026-11-01T00:00:00.000Z)" in lines[2]

    code, out, _ = run_cli(capsys, "trace", "--config", str(config), "--user", "C-404", "--output", "json")
    assert code == 0 and json.loads(out) == {"user": "C-404", "entries": []}
