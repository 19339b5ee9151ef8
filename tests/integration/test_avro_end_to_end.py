"""Avro topics end to end: records framed with registered schema ids (written
by confluent-kafka's AvroSerializer), a plain Avro topic with a local schema,
schema evolution, decode errors dead-lettered, and a registry outage that
delays but loses nothing."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.devtools.registry import LocalRegistry
from bridge.devtools.sandbox import Sandbox
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    committed_and_ends,
    log_events,
    read_all,
    start_bridge,
    wait_for,
    write_config,
)

ROOT = Path(__file__).parents[2]
V1: dict[str, Any] = {
    "type": "record",
    "name": "BookingAbandoned",
    "namespace": "test",
    "fields": [
        {"name": "type", "type": "string", "default": "booking_abandoned"},
        {"name": "seq", "type": "int"},
        {"name": "occurredAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "customer",
            "type": {"type": "record", "name": "Customer", "fields": [{"name": "id", "type": "string"}]},
        },
        {
            "name": "booking",
            "type": {
                "type": "record",
                "name": "Booking",
                "fields": [
                    {"name": "id", "type": "string"},
                    {
                        "name": "value",
                        "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
                    },
                    {"name": "checkIn", "type": {"type": "int", "logicalType": "date"}},
                ],
            },
        },
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "loyaltyTier", "type": "string", "default": "none"}]}


def rules(cluster: TestKafka) -> list[dict[str, Any]]:
    return [
        {
            "name": "abandoned-sms",
            "topics": [cluster.name("bookings-avro")],
            "when": "type == 'booking_abandoned' && to_number(booking.value) > `100`",
            "emit": {
                "event": "send_sms",
                "userId": "{{ customer.id }}",
                "assetId": "A-SMS",
                "seq": "{{ seq }}",
                "timestamp": "{{ occurredAt }}",
                "total": "{{ booking.value }}",
                "checkIn": "{{ booking.checkIn }}",
                "tier": "{{ loyaltyTier }}",
            },
        },
        {
            "name": "reminder-push",
            "topics": [cluster.name("plain-avro")],
            "emit": {
                "event": "send_push",
                "userId": "{{ customer.id }}",
                "assetId": "A-PUSH",
                "message": "{{ message }}",
                "timestamp": "{{ occurredAt }}",
                "link": "{{ deepLink }}",
            },
        },
    ]


def event(seq: int, version: int) -> dict[str, Any]:
    value = {
        "seq": seq,
        "occurredAt": datetime(2026, 11, 1, 12, 0, seq % 60, seq * 1000 % 1_000_000, tzinfo=UTC),
        "customer": {"id": f"C-{seq % 7}"},
        "booking": {"id": f"B-{seq}", "value": Decimal(f"{100 + seq}.50"), "checkIn": date(2026, 12, 1)},
    }
    return value | ({"loyaltyTier": "gold"} if version == 2 else {})


def expected_body(seq: int, version: int) -> dict[str, Any]:
    body = {
        "event": "send_sms",
        "userId": f"C-{seq % 7}",
        "assetId": "A-SMS",
        "seq": seq,
        "timestamp": f"2026-11-01T12:00:{seq % 60:02d}.{seq % 1000:03d}Z",
        "total": f"{100 + seq}.50",
        "checkIn": "2026-12-01",
    }
    return body | ({"tier": "gold"} if version == 2 else {"tier": "none"} if version == 1.5 else {})


def avro_config(cluster: TestKafka, sandbox: Sandbox, registry: LocalRegistry, group: str) -> dict[str, Any]:
    config = base_config(cluster, sandbox.url, group)
    config["source"] = {
        "topics": [
            {"name": cluster.name("bookings-avro"), "format": "avro"},
            {
                "name": cluster.name("plain-avro"),
                "format": "avro",
                "schema": str(ROOT / "schemas/app_reminder.avsc"),
            },
        ],
        "schema_registry": {"url": registry.url, "basic_auth": "${SCHEMA_REGISTRY_AUTH:-}"},
    }
    config["delivery"]["dead_letter_topic"] = cluster.name("avro.dlq")
    config["rules"] = rules(cluster)
    return config


@pytest.fixture
def registry() -> Any:
    with LocalRegistry() as server:
        yield server


@pytest.fixture
def serializers(registry: LocalRegistry) -> Any:
    with SchemaRegistryClient({"url": registry.url}) as client:
        yield {1: AvroSerializer(client, json.dumps(V1)), 2: AvroSerializer(client, json.dumps(V2))}


def test_avro_topics_end_to_end(
    cluster: TestKafka, sandbox: Sandbox, registry: LocalRegistry, serializers: Any, tmp_path: Path
) -> None:
    for topic, partitions in (
        (cluster.name("bookings-avro"), 2),
        (cluster.name("plain-avro"), 1),
        (cluster.name("avro.dlq"), 1),
    ):
        cluster.create_topic(topic, partitions)
    write = serializers
    context = SerializationContext(cluster.name("bookings-avro"), MessageField.VALUE)
    producer = CheckedProducer(cluster.bootstrap_servers)
    expected = []
    for seq in range(60):
        version = 1 if seq % 3 else 2  # two schema versions interleaved on one topic
        producer.produce(
            cluster.name("bookings-avro"),
            key=f"C-{seq % 7}",
            value=write[version](event(seq, version), context),
        )
        expected.append(expected_body(seq, version))
    good_frame = write[1](event(99, 1), context)
    bad = [b"\x00" + struct.pack(">I", 999) + b"\x02x", b'{"not": "avro"}', good_frame[:9]]
    for value in bad:
        producer.produce(cluster.name("bookings-avro"), key="C-bad", value=value)
    reminder = fastavro.parse_schema(json.loads((ROOT / "schemas/app_reminder.avsc").read_text()))
    plain = io.BytesIO()
    fastavro.schemaless_writer(
        plain,
        reminder,
        {
            "eventId": "8a1c0a52-5d1e-4f7e-9c1e-0c1f7b3e2a04",
            "occurredAt": datetime(2026, 12, 17, 8, 30, tzinfo=UTC),
            "customer": {"id": "C-1"},
            "message": "Tomorrow!",
            "deepLink": "acme://b/1",
            "deviceToken": None,
        },
    )
    producer.produce(cluster.name("plain-avro"), key="C-1", value=plain.getvalue())
    assert producer.flush() == 0

    log_path = tmp_path / "bridge.log"
    config = write_config(tmp_path, avro_config(cluster, sandbox, registry, "avro"))
    assert start_bridge(config, log_path, "--until-caught-up").wait(timeout=120) == 0, log_path.read_text()[
        -3000:
    ]

    bodies = [r["body"] for r in accepted(sandbox)]
    sms = sorted((b for b in bodies if b["event"] == "send_sms"), key=lambda b: b["seq"])
    assert sms == expected
    assert [b for b in bodies if b["event"] == "send_push"] == [
        {
            "event": "send_push",
            "userId": "C-1",
            "assetId": "A-PUSH",
            "message": "Tomorrow!",
            "timestamp": "2026-12-17T08:30:00.000Z",
            "link": "acme://b/1",
        }
    ]
    dead = read_all(cluster.bootstrap_servers, cluster.name("avro.dlq"))
    reasons = {m.value(): {k: v.decode() for k, v in m.headers()} for m in dead}
    assert set(reasons) == set(bad)
    assert all(h["x-bridge-error-class"] == "decode" for h in reasons.values())
    assert reasons[bad[0]]["x-bridge-error-reason"].startswith("unknown schema id 999 (schema registry 404")
    assert reasons[bad[1]]["x-bridge-error-reason"].startswith("wrong magic byte 0x7b")
    assert reasons[bad[2]]["x-bridge-error-reason"].startswith("bytes do not decode with the Avro schema")
    assert registry.state.fetches == {1: 1, 2: 1, 999: 1}, "one registry request per schema id"
    for committed, end in committed_and_ends(
        cluster.bootstrap_servers, "avro", cluster.name("bookings-avro"), 2
    ):
        assert committed == end

    # The one-shot readers decode as run does, fetching the registry's schemas first.
    same = verb(
        "diff", "--config", str(config), "--candidate", str(config), "--last", "1h", "--output", "json"
    )
    assert same.returncode == 0, same.stderr
    compared = json.loads(same.stdout)
    assert compared["records"] == 64 and compared["commands"]["unchanged"] == len(bodies)
    assert compared["dead_letters"] == {"current": 3, "candidate": 3}
    dry = verb(
        "replay",
        "--config",
        str(config),
        "--topic",
        cluster.name("bookings-avro"),
        "--from-beginning",
        "--dry-run",
    )
    assert dry.returncode == 1, dry.stderr  # the three bad records would be dead-lettered
    printed = sorted((json.loads(line)["body"] for line in dry.stdout.splitlines()), key=lambda b: b["seq"])
    assert printed == expected


def verb(*args: str) -> subprocess.CompletedProcess[str]:
    """``intilery-bridge`` run as a process of its own, its output as text."""
    command = [sys.executable, "-m", "bridge", *args]
    return subprocess.run(command, capture_output=True, text=True, env=bridge_env(), timeout=120, check=False)


def test_registry_outage_delays_but_loses_nothing(
    cluster: TestKafka, sandbox: Sandbox, registry: LocalRegistry, serializers: Any, tmp_path: Path
) -> None:
    for topic, partitions in (
        (cluster.name("bookings-avro"), 2),
        (cluster.name("plain-avro"), 1),
        (cluster.name("avro.dlq"), 1),
    ):
        cluster.create_topic(topic, partitions)
    write = serializers[2]
    context = SerializationContext(cluster.name("bookings-avro"), MessageField.VALUE)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(40):
        producer.produce(
            cluster.name("bookings-avro"), key=f"C-{seq % 7}", value=write(event(seq, 2), context)
        )
    producer.flush()
    registry.state.fail_status = 503
    log_path = tmp_path / "bridge.log"
    process = start_bridge(
        write_config(tmp_path, avro_config(cluster, sandbox, registry, "outage")), log_path
    )
    try:
        wait_for(
            lambda: len([e for e in log_events(log_path) if e["event"] == "schema_registry_retry"]) >= 3,
            30,
            "registry retries",
        )
        assert accepted(sandbox) == []
        registry.state.fail_status = None
        wait_for(lambda: len(accepted(sandbox)) == 40, 30, "delivery after the registry recovers")
        wait_for(
            lambda: (
                [
                    c
                    for c, e in committed_and_ends(
                        cluster.bootstrap_servers, "outage", cluster.name("bookings-avro"), 2
                    )
                    if c != e
                ]
                == []
            ),
            10,
            "commits",
        )
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(40))
    assert read_all(cluster.bootstrap_servers, cluster.name("avro.dlq")) == []
    retries = [e for e in log_events(log_path) if e["event"] == "schema_registry_retry"]
    assert all("503" in e["reason"] for e in retries)
