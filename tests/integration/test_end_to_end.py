"""The bridge as users run it: a subprocess reading a real Apache Kafka broker over
TCP and posting to the sandbox over real HTTP."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    committed_and_ends,
    log_events,
    read_all,
    start_bridge,
    write_config,
)

BASE_MS = 1_795_000_000_000
PARTITIONS = 3


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def make_event(seq: int) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """An event of every rule kind in turn, and the (action, body) pairs it must produce."""
    user = f"C-{seq % 20:02d}"
    ts = iso(BASE_MS + seq * 1000)
    kind = seq % 8
    if kind == 0:
        value = 1500 if seq % 16 == 0 else 300
        event = {
            "type": "booking_abandoned",
            "channel": "sms",
            "seq": seq,
            "customer": {"id": user},
            "occurredAt": f"2026-11-0{1 + seq % 9}T10:00:00+02:00",
            "booking": {"id": f"B-{seq}", "value": value, "stepId": "S-9"},
        }
        out = [
            (
                "track",
                {
                    "event": "send_sms",
                    "userId": user,
                    "assetId": "ASSET-SMS",
                    "timestamp": f"2026-11-0{1 + seq % 9}T08:00:00.000Z",
                    "bookingId": f"B-{seq}",
                    "seq": seq,
                },
            )
        ]
        if value > 1000:
            out.append(
                (
                    "track",
                    {
                        "event": "start_journey",
                        "userId": user,
                        "seq": seq,
                        "timestamp": ts,
                        "properties": {"journeyIdToTrigger": "J-1", "stepIdToTrigger": "S-9"},
                    },
                )
            )
        return event, out
    if kind == 1:
        event = {
            "type": "booking_abandoned",
            "channel": "email",
            "seq": seq,
            "customer": {"id": user},
            "booking": {"id": f"B-{seq}", "value": 2000},
        }
        return event, [
            (
                "track",
                {
                    "event": "send_email",
                    "userId": user,
                    "assetId": "ASSET-EMAIL",
                    "seq": seq,
                    "subject": f"Your booking B-{seq} is waiting",
                    "timestamp": ts,
                },
            ),
            (
                "track",
                {
                    "event": "start_journey",
                    "userId": user,
                    "seq": seq,
                    "timestamp": ts,
                    "properties": {"journeyIdToTrigger": "J-1"},
                },
            ),
        ]
    if kind == 2:
        event = {
            "type": "customer_registered",
            "seq": seq,
            "customer": {"id": user, "email": f"{user}@x.test"},
        }
        return event, [
            (
                "identify",
                {
                    "event": "identify",
                    "userId": user,
                    "seq": seq,
                    "timestamp": ts,
                    "traits": {"email": f"{user}@x.test"},
                },
            )
        ]
    if kind == 3:
        event = {"type": "letter", "seq": seq, "customer": {"id": user}}
        return event, [
            (
                "track",
                {
                    "event": "send_print",
                    "userId": user,
                    "assetId": "ASSET-PRINT",
                    "seq": seq,
                    "partition": None,
                    "timestamp": ts,
                },
            )
        ]
    if kind == 4:
        event = {"type": "app_reminder", "seq": seq, "customer": {"id": user}}
        return event, [
            (
                "track",
                {
                    "event": "send_push",
                    "userId": user,
                    "assetId": "ASSET-PUSH",
                    "seq": seq,
                    "source": "mobile",
                    "timestamp": ts,
                },
            )
        ]
    if kind == 5:
        event = {
            "type": "booking_viewed",
            "seq": seq,
            "customer": {"id": user},
            "booking": {"id": f"B-{seq}"},
        }
        return event, [
            (
                "track",
                {
                    "event": "Booking Viewed",
                    "userId": user,
                    "seq": seq,
                    "timestamp": ts,
                    "properties": {"bookingId": f"B-{seq}"},
                },
            )
        ]
    return {"type": "nothing_to_do", "seq": seq, "customer": {"id": user}}, []


@pytest.mark.parametrize("batch", [None, {"max_calls": 7, "linger_ms": 5}], ids=["one-per-request", "batch"])
def test_every_rule_kind_end_to_end(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, batch: dict[str, Any] | None
) -> None:
    """Exact bodies reach Intilery, bad records are dead-lettered with their
    reasons, per-key order holds, and committed offsets reach every end."""
    cluster.create_topic(cluster.topic, PARTITIONS)
    cluster.create_topic(cluster.dlq, 1)
    sandbox.state.set_faults({"reject": {"userId": "C-REJECT"}})
    producer = CheckedProducer(cluster.bootstrap_servers)
    expected: list[tuple[str, dict[str, Any]]] = []
    partition_of: dict[str, int] = {}
    total = 320
    for seq in range(total):
        event, out = make_event(seq)
        key = event["customer"]["id"]
        producer.produce(
            cluster.topic,
            key=key,
            value=json.dumps(event).encode(),
            timestamp=BASE_MS + seq * 1000,
            headers=[("source", b"mobile")] if seq % 8 == 4 else [],
        )
        expected += out
    bad = [
        (b"C-01", b"{not json", [("trace", b"t-1")]),
        (
            b"C-02",
            json.dumps(
                {"type": "booking_abandoned", "channel": "sms", "customer": {}, "booking": {"id": "B-x"}}
            ).encode(),
            [],
        ),
        (
            b"C-REJECT",
            json.dumps(
                {
                    "type": "booking_abandoned",
                    "channel": "sms",
                    "seq": 999,
                    "customer": {"id": "C-REJECT"},
                    "booking": {"id": "B-r"},
                }
            ).encode(),
            [],
        ),
    ]
    for key, value, headers in bad:
        producer.produce(cluster.topic, key=key, value=value, headers=headers, timestamp=BASE_MS - 1)
    assert producer.flush() == 0
    # The print rule renders the record's partition: fill it in now the producer has placed each key.
    for message in read_all(cluster.bootstrap_servers, cluster.topic, PARTITIONS):
        partition_of[message.key().decode()] = message.partition()
    for _, body in expected:
        if body["event"] == "send_print":
            body["partition"] = partition_of[body["userId"]]

    config = write_config(tmp_path, base_config(cluster, sandbox.url, "e2e", batch=batch))
    log_path = tmp_path / "bridge.log"
    process = start_bridge(config, log_path, "--until-caught-up")
    assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]

    got = accepted(sandbox)
    canonical = sorted(json.dumps([r["action"], r["body"]], sort_keys=True) for r in got)
    assert canonical == sorted(json.dumps([a, b], sort_keys=True) for a, b in expected)

    # Per key, commands arrive in record order (and rule order within a record).
    by_user: dict[str, list[int]] = defaultdict(list)
    for request in got:
        by_user[request["body"]["userId"]].append(request["body"]["seq"])
    for user, seqs in by_user.items():
        assert seqs == sorted(seqs), f"{user} out of order: {seqs}"

    dead = read_all(cluster.bootstrap_servers, cluster.dlq)
    headers = [{k: v.decode() for k, v in m.headers()} for m in dead]
    by_class = {h["x-bridge-error-class"]: (m, h) for m, h in zip(dead, headers, strict=True)}
    assert sorted(by_class) == ["decode", "mapping", "rejected"]
    decode_msg, decode_h = by_class["decode"]
    assert (decode_msg.key(), decode_msg.value()) == (b"C-01", b"{not json")
    assert decode_h["trace"] == "t-1" and decode_h["x-bridge-error-reason"].startswith("invalid JSON")
    assert decode_h["x-bridge-source-topic"] == cluster.topic and "x-bridge-rule" not in decode_h
    _, mapping_h = by_class["mapping"]
    assert mapping_h["x-bridge-rule"] == "abandoned-sms"
    assert mapping_h["x-bridge-error-reason"] == "userId: required for send_sms"
    rejected_msg, rejected_h = by_class["rejected"]
    assert rejected_msg.value() == bad[2][1]
    assert rejected_h["x-bridge-http-status"] == "400" and rejected_h["x-bridge-rule"] == "abandoned-sms"
    for h in headers:
        assert {"x-bridge-source-partition", "x-bridge-source-offset"} <= set(h)
    assert all(m.timestamp()[1] == BASE_MS - 1 for m in dead), "dead letters keep the record's time"

    for committed, end in committed_and_ends(cluster.bootstrap_servers, "e2e", cluster.topic, PARTITIONS):
        assert committed == end
    batches = [r for r in sandbox.state.listing("requests", 0)["requests"] if r["action"] == "batch"]
    if batch:
        assert batches and max(len(r["body"]["batch"]) for r in batches) <= 7
    else:
        assert not batches

    events = log_events(log_path)
    summary = [e for e in events if e["event"] == "bridge_summary"][-1]
    assert {k: summary[k] for k in ("consumed", "delivered", "dead_lettered", "skipped")} == {
        "consumed": total + 3,
        "delivered": len(expected),
        "dead_lettered": 3,
        "skipped": total // 8 * 2,
    }
    delivered = [e for e in events if e["event"] == "command_delivered"]
    assert len(delivered) == len(expected)
    assert all(e["eventId"] and e["status"] == 200 for e in delivered)
    assert not any("test-token-5f2b9c" in line for line in log_path.read_text().splitlines())


def test_without_dead_letter_topic_stops_and_leaves_offset(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A permanent failure with no dead-letter topic: exit non-zero, the record
    and everything after it stay uncommitted."""
    cluster.create_topic(cluster.topic, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(5):
        producer.produce(cluster.topic, key="C-1", value=json.dumps(make_event(5)[0] | {"seq": seq}).encode())
    producer.produce(cluster.topic, key="C-1", value=b"garbage")
    for seq in range(6, 10):
        producer.produce(cluster.topic, key="C-1", value=json.dumps(make_event(5)[0] | {"seq": seq}).encode())
    producer.flush()
    config = base_config(cluster, sandbox.url, "no-dlq", dead_letter_topic=None)
    log_path = tmp_path / "bridge.log"
    process = start_bridge(write_config(tmp_path, config), log_path)
    assert process.wait(timeout=60) == 3
    text = log_path.read_text()
    assert "no delivery.dead_letter_topic is set" in text
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == [0, 1, 2, 3, 4], "nothing after the failure"
    [(committed, end)] = committed_and_ends(cluster.bootstrap_servers, "no-dlq", cluster.topic, 1)
    assert (committed, end) == (5, 10)
