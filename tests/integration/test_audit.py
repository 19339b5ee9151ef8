"""The audit topic on the real broker, over real HTTP: one entry per command the sandbox
accepted (its eventId, rule, rules version, source record, trace), keyed by the userId,
the merge fields only with ``audit_include_body``; a dead-lettered record has none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    log_events,
    produce_events,
    read_all,
    sms_event,
    start_bridge,
    write_config,
)


@pytest.mark.parametrize("include_body", [False, True], ids=["ids-only", "with-body"])
def test_every_accepted_command_has_one_audit_entry(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, include_body: bool
) -> None:
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    cluster.create_topic(audit_topic, 2)
    events = [sms_event(seq, 4) for seq in range(30)]
    events[7]["customer"]["id"] = "C-REFUSED"
    produce_events(cluster.bootstrap_servers, cluster.topic, events)
    sandbox.state.set_faults({"reject": {"userId": "C-REFUSED"}})
    config = base_config(
        cluster, sandbox.url, "audited", audit_topic=audit_topic, audit_include_body=include_body
    )
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
        assert entry.get("body") == (call["body"] if include_body else None)
