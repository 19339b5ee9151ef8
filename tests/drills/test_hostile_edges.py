"""Outside bytes where they enter, on the real broker: a hostile producer and a hostile
Intilery between good records.

The producer writes through librdkafka itself (tests/rawkafka.py), as any non-Python client
can: header names that are not UTF-8, a ``tracestate`` that is not valid (``café``, a
control character), a forged ``x-bridge-user-id``, and on an Avro topic a 1 MB decimal (the
quadratic conversion held the event loop for 86 s). Intilery (tests/hostile.py) answers a
503 with ``Retry-After: 315360000``, a 429 with ``Retry-After: inf``, eventIds holding a lone
surrogate or control characters, an answer with a header that is not text and one nested past
the JSON parser. The bridge, with an audit topic, never exits; every good event is delivered
once, the decimal is dead-lettered, and commits reach the end of every partition."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import KafkaException

from bridge.devtools.registry import LocalRegistry
from bridge.devtools.sandbox import Sandbox
from tests.drills.support import PARTITIONS, DrillBridge, Outcome, drill_config, report
from tests.hostile import Answer, HostileServer
from tests.rawkafka import RawProducer
from tests.support import TestKafka, committed_and_ends, log_events, read_all, sms_event, wait_for

BOOKING = {
    "type": "record",
    "name": "Booking",
    "fields": [{"name": "id", "type": "string"}, {"name": "value", "type": "bytes"}],
}
EVENT = {
    "type": "record",
    "name": "Abandoned",
    "fields": [
        {"name": "type", "type": "string"},
        {"name": "channel", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "occurredAt", "type": "string"},
        {
            "name": "customer",
            "type": {"type": "record", "name": "Customer", "fields": [{"name": "id", "type": "string"}]},
        },
        {"name": "booking", "type": BOOKING},
    ],
}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
# What the registry serves: the same bytes, the booking's value a decimal.
REGISTERED = {
    **EVENT,
    "fields": [
        *EVENT["fields"][:5],
        {
            "name": "booking",
            "type": {**BOOKING, "fields": [BOOKING["fields"][0], {"name": "value", "type": DECIMAL}]},
        },
    ],
}
WRITER = fastavro.parse_schema(EVENT)  # the writer's view: the decimal's bytes as they are
HUGE_DECIMAL = b"\x01" * 1_000_000
TRACESTATES = ["vendor=café".encode(), b"vendor=a\x01b", b"ok=1"]


def avro(schema_id: int, seq: int, value: bytes) -> bytes:
    event = {**sms_event(seq, 50), "booking": {"id": f"B-{seq}", "value": value}}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, WRITER, event)
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


def intilery_answers() -> list[Answer]:
    """The hostile answers, each once, early in the run; then plain acceptances."""
    ok = [(b"Content-Type", b"application/json")]
    return [
        Answer(503, [(b"Retry-After", b"315360000")], b""),
        Answer(200, ok, b'{"success": true, "eventId": "evt-\\udce9"}'),
        Answer(429, [(b"Retry-After", b"inf")], b""),
        Answer(200, ok, b'{"success": true, "eventId": "evt\\u0000\\n\\u001b[2J"}'),
        Answer(200, [(b"X-\xff", b"\x00\x01")], b"{}"),  # aiohttp cannot parse it: retried
        Answer(200, ok, b"[" * 100_000),  # 2xx, not JSON: accepted, no eventId
        Answer(200, ok, b'{"success": true, "eventId": 12345}'),
    ]


def clean(answer: Answer) -> bool:
    """Whether the client reads the answer as Intilery's acceptance."""
    return answer.status == 200 and not any(name.startswith(b"X-\xff") for name, _ in answer.headers)


@pytest.mark.slow  # make drills (the default suite keeps to five minutes)
def test_a_hostile_producer_and_a_hostile_intilery(
    drill_cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, drill_bridge: DrillBridge
) -> None:
    records = 2000
    avro_topic, audit = drill_cluster.name("avro"), drill_cluster.name("audit")
    drill_cluster.create_topic(avro_topic, 1, **{"max.message.bytes": str(8 << 20)})
    drill_cluster.create_topic(audit, 1)
    with (
        LocalRegistry() as registry,
        HostileServer(Answer(200, [], b'{"success":true,"eventId":"e"}')) as intilery,
    ):
        schema_id = registry.state.register("avro-value", {"schema": json.dumps(REGISTERED)})
        config = drill_config(drill_cluster, sandbox, "edges", audit_topic=audit)
        config["intilery"]["url"] = intilery.url
        config["source"] = {
            "topics": [drill_cluster.topic, {"name": avro_topic, "format": "avro"}],
            "format": "json",
            "schema_registry": {**config["source"]["schema_registry"], "url": registry.url},
        }
        intilery.answer(*intilery_answers())
        producer = RawProducer(drill_cluster.bootstrap_servers, **{"message.max.bytes": str(3 << 20)})
        goods: list[int] = []
        raw_names = 0
        for seq in range(records):
            key = f"C-{seq % 50}".encode()
            if seq % 5 == 4:  # on the Avro topic: a good one, or the one 1 MB decimal
                huge = seq == records // 2 - 1
                value = avro(schema_id, seq, HUGE_DECIMAL if huge else (seq * 100).to_bytes(4, "big"))
                forged = [(b"x-bridge-user-id", b"C-victim")] if huge else []
                producer.produce(avro_topic, value, key, [(b"seq", str(seq).encode()), *forged])
                if not huge:
                    goods.append(seq)
                continue
            headers = [(b"seq", str(seq).encode())]
            if seq % 3 == 0:
                headers.append((b"\xff\xfe-origin", b"web"))  # confluent-kafka raised SystemError
                raw_names += 1
            traceparent = f"00-{seq + 1:032x}-{seq + 1:016x}-01".encode()
            headers += [(b"traceparent", traceparent), (b"tracestate", TRACESTATES[seq % 3])]
            producer.produce(drill_cluster.topic, json.dumps(sms_event(seq, 50)).encode(), key, headers)
            goods.append(seq)
        producer.close()
        log_path = tmp_path / "bridge.log"
        started = time.monotonic()
        with drill_bridge(config, log_path) as process:

            def settled() -> bool:
                accepted = {json.loads(e.body)["seq"] for e in intilery.exchanges if clean(e.answer)}
                if not accepted >= set(goods):
                    return False
                bootstrap = drill_cluster.bootstrap_servers
                try:
                    ends = committed_and_ends(bootstrap, "edges", drill_cluster.topic, PARTITIONS)
                    ends += committed_and_ends(bootstrap, "edges", avro_topic, 1)
                except KafkaException:  # the group's coordinator not known yet
                    return False
                return all(committed == end for committed, end in ends)

            wait_for(settled, 120, "good events delivered and commits at every end", [process])
            elapsed = time.monotonic() - started
            assert process.poll() is None, "the bridge must still be running"
        exchanges = list(intilery.exchanges)
    sent = Counter(json.loads(e.body)["seq"] for e in exchanges if clean(e.answer))
    assert set(sent) == set(goods), "every good event delivered, the decimal not"
    duplicated = sum(n - 1 for n in sent.values())
    assert duplicated == 0
    for exchange in exchanges:  # the headers sent are Intilery's to read: no invalid tracestate
        state = exchange.header(b"tracestate")
        assert state in (None, b"ok=1"), state
    gaps = [b.at - a.at for a, b in itertools.pairwise(exchanges)]
    events = log_events(log_path)
    kinds = Counter(e["event"] for e in events)
    assert kinds["record_headers_unreadable"] == raw_names
    assert "delivery_crashed" not in kinds and "bridge_failed" not in kinds
    (letter,) = read_all(drill_cluster.bootstrap_servers, drill_cluster.dlq)
    headers = dict(letter.headers())
    assert b"more than precision 12 allows" in headers["x-bridge-error-reason"]
    assert "x-bridge-user-id" not in headers and headers["x-source-x-bridge-user-id"] == b"C-victim"
    entries = read_all(drill_cluster.bootstrap_servers, audit)
    assert len(entries) == len(goods) and all(json.loads(m.value()) for m in entries)
    report(
        "7c hostile edges: raw headers, a 1 MB decimal, a hostile Intilery",
        Outcome(records, 0, duplicated, 1),
        None,
        f"{raw_names} header names not UTF-8 (headers dropped, delivered), bad tracestates dropped, "
        "a 1 MB decimal dead-lettered; Retry-After 315360000 and inf capped at 0.5 s, odd eventIds audited; "
        f"longest pause between requests {max(gaps):.2f} s; {elapsed:.1f} s in all",
    )
