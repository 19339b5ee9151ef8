"""Trace context on the real broker, over real HTTP: a record's traceparent continued into
each request sent to Intilery for it (the sandbox records the headers it was sent), a
trace of its own for a record without one, and the ids in the log lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.otlp import Receiver
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    log_events,
    sms_event,
    start_bridge,
    write_config,
)

TRACES = {0: "4bf92f3577b34da6a3ce929d0e0e4736", 1: "0af7651916cd43dd8448eb211c80319c"}
PARENT = "00f067aa0ba902b7"
# One command per request, and batch mode (a batch request is a trace of its own).
BATCH_MODES = pytest.mark.parametrize(
    "batch", [None, {"max_calls": 10, "linger_ms": 50}], ids=["one-per-request", "batch"]
)


@BATCH_MODES
def test_a_records_trace_continues_into_its_request(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, batch: dict[str, int] | None
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    headers = {
        0: [("traceparent", f"00-{TRACES[0]}-{PARENT}-01".encode()), ("tracestate", b"acme=7")],
        1: [("traceparent", f"00-{TRACES[1]}-{PARENT}-01".encode())],
        2: [("traceparent", b"00-not-a-trace-01")],  # invalid: a trace of its own
        3: [],
    }
    for seq, extra in headers.items():
        event = sms_event(seq, 10)
        producer.produce(cluster.topic, key=f"C-{seq}", value=json.dumps(event).encode(), headers=extra)
    producer.flush()
    config = base_config(cluster, sandbox.url, "traced", batch=batch)
    log_path = tmp_path / "bridge.log"
    assert start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=120) == 0

    delivered = {int(e["offset"]): e for e in log_events(log_path) if e["event"] == "command_delivered"}
    calls = {int(c["body"]["seq"]): c for c in accepted(sandbox)}
    assert sorted(delivered) == sorted(calls) == [0, 1, 2, 3]
    for seq, line in delivered.items():
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
        if seq in TRACES:  # continued: the record's span a child of the producer's
            assert line["trace_id"] == TRACES[seq] and line["span_id"] != PARENT
    assert len({line["trace_id"] for line in delivered.values()}) == 4  # 2 and 3: a trace each
    for seq, call in calls.items():
        version, trace_id, span_id, flags = call["traceparent"].split("-")
        assert (version, flags) == ("00", "01") and span_id not in (PARENT, delivered[seq]["span_id"])
        if batch is None:  # the request is the record's: its trace, a span of its own
            assert trace_id == delivered[seq]["trace_id"]
        else:  # a batch request is a trace of its own (linked to its records' spans)
            assert trace_id not in {line["trace_id"] for line in delivered.values()}
    if batch is None:
        assert calls[0]["tracestate"] == "acme=7" and "tracestate" not in calls[1]


@BATCH_MODES
def test_spans_reach_an_otlp_collector_one_per_record_and_per_request(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, batch: dict[str, int] | None
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    traced = [("traceparent", f"00-{TRACES[0]}-{PARENT}-01".encode())]
    for seq in range(4):
        event = sms_event(seq, 10) if seq != 3 else {"type": "nothing_to_send", "seq": 3}
        producer.produce(
            cluster.topic, key=f"C-{seq}", value=json.dumps(event).encode(), headers=traced * (seq == 0)
        )
    producer.flush()
    sandbox.state.set_faults({"reject": {"userId": "C-2"}})  # seq 2: refused, dead-lettered
    config = base_config(cluster, sandbox.url, "exported", batch=batch)
    with Receiver() as receiver:
        config["observability"]["tracing"] = {"otlp_endpoint": receiver.url}
        log_path = tmp_path / "bridge.log"
        assert (
            start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=120) == 0
        )
    logs = log_events(log_path)
    records = {
        s["attributes"]["messaging.kafka.offset"]: s
        for s in receiver.spans
        if s["name"].startswith("process")
    }
    requests = [s for s in receiver.spans if s["name"] == "POST /v1/track"]
    outcomes = {offset: span["attributes"]["bridge.outcome"] for offset, span in records.items()}
    assert outcomes == {0: "delivered", 1: "delivered", 2: "dead_lettered", 3: "skipped"}
    assert records[0]["trace_id"] == TRACES[0] and records[0]["parent_span_id"] == PARENT
    lines = {e["offset"]: e for e in logs if e["event"] in ("command_delivered", "command_dead_lettered")}
    for offset in (0, 1, 2):  # the log line and the span: the same trace and span
        assert (lines[offset]["trace_id"], lines[offset]["span_id"]) == (
            records[offset]["trace_id"],
            records[offset]["span_id"],
        )
    seen = {value for span in receiver.spans for value in span["attributes"].values()}
    assert not seen & {"C-0", "C-1", "C-2", "B-0", "B-1"}  # no customer data in a span
    assert not [e for e in logs if e["event"] == "spans_dropped"]  # the collector took them all
    if batch is not None:  # batch requests: traces of their own, linked to their records' spans
        batches = [s for s in receiver.spans if s["name"] == "POST /v1/batch"]
        linked = {link for span in batches for link in span["links"]}  # a refused batch is split: again
        assert requests == [] and linked == {
            (records[o]["trace_id"], records[o]["span_id"]) for o in (0, 1, 2)
        }
        assert not {span["trace_id"] for span in batches} & {r["trace_id"] for r in records.values()}
        return
    by_parent = {span["parent_span_id"]: span for span in requests}
    assert sorted(by_parent) == sorted(records[offset]["span_id"] for offset in (0, 1, 2))
    assert by_parent[records[2]["span_id"]]["attributes"]["http.response.status_code"] == 400
    assert all(
        span["trace_id"] == records[0]["trace_id"]
        for span in requests
        if span["parent_span_id"] == records[0]["span_id"]
    )
