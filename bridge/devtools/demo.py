"""``intilery-bridge demo``: the whole flow on one machine, nothing to install.

Starts an embedded Kafka (librdkafka's mock cluster), or uses the broker named by
``--bootstrap-servers`` (topics are created when missing; a group that already
read them goes on from its committed offsets), the sandbox and a local schema
registry. Part one produces the JSON sample events of
``examples/events/`` (plus one record that is not JSON) and runs the bridge with
``examples/bridge.yaml``; part two produces the Avro samples of
``examples/avro-events/`` (registry-framed and plain) and runs it with
``examples/bridge-avro.yaml``. Each part runs until the bridge has caught up,
then prints what the sandbox received, the dead letters and the committed
offsets.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import fastavro
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge import logs
from bridge.decode.avro import load_schema
from bridge.devtools.examples import PACKAGE, closing_hint
from bridge.devtools.registry import LocalRegistry
from bridge.devtools.sandbox import Sandbox
from bridge.errors import ConfigError
from bridge.kafka.consumer import asking_kafka, record_from_message
from bridge.kafka.deadletter import DeadLetterHeaders
from bridge.ops.loading import Loaded, load
from bridge.ops.story import customer_story
from bridge.runtime.factory import build_bridge

if TYPE_CHECKING:
    from bridge.devtools.mockcluster import MockCluster

EXAMPLES = PACKAGE / "examples"
TOKEN = "demo-token-not-a-secret"
JSON_TOPICS = {"bookings": 3, "app-events": 1}
AUDIT_TOPIC, TOLD = "bookings.intilery-audit", "C-1001"  # part one writes an audit topic: one story told
COPIED = "B-5001"  # part one produces this booking's event twice (a producer's retry): caught by dedupe
AVRO_TOPICS = {"bookings-avro": 2, "app-events-avro": 1}


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "logger": logs.kafka_logger()})


def produce_json(bootstrap: str) -> int:
    producer, count = _producer(bootstrap), 0
    for path in sorted((EXAMPLES / "events").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                key = json.loads(line).get("customer", {}).get("id")
                producer.produce(path.stem, key=key, value=line.encode())
                count += 1
    producer.produce("bookings", key="C-1002", value=b'{"type": "booking_abandoned", "channel": ')
    copied = next(
        line for line in (EXAMPLES / "events" / "bookings.jsonl").read_text().splitlines() if COPIED in line
    )
    producer.produce("bookings", key=json.loads(copied)["customer"]["id"], value=copied.encode())
    producer.flush(10)
    return count + 2


def with_audit_and_dedupe(config_name: str, directory: str) -> Loaded:
    """The example configuration with an audit topic, and the abandoned-booking SMS sent once
    per booking (``dedupe``), as part one runs it."""
    raw = yaml.safe_load((EXAMPLES / config_name).read_text())
    raw["delivery"]["audit_topic"] = AUDIT_TOPIC
    for rule in raw["rules"]:
        if rule["name"] == "abandoned-sms":
            rule["dedupe"] = {"key": "{{ booking.id }}", "window": "24h"}
    path = Path(directory) / config_name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load(str(path))


def produce_avro(bootstrap: str, registry_url: str) -> int:
    """Booking events framed with registered schema ids; reminders as plain Avro."""
    with SchemaRegistryClient({"url": registry_url}) as client:
        return _produce_avro(_producer(bootstrap), client)


def _produce_avro(producer: Producer, client: SchemaRegistryClient) -> int:
    count = 0
    for name, topic in (
        ("booking_abandoned", "bookings-avro"),
        ("booking_confirmed", "bookings-avro"),
        ("app_reminder", "app-events-avro"),
    ):
        schema = load_schema(PACKAGE / "schemas" / f"{name}.avsc")
        serialize = AvroSerializer(client, (PACKAGE / "schemas" / f"{name}.avsc").read_text())
        lines = (EXAMPLES / "avro-events" / f"{name}.jsonl").read_text()
        for event in fastavro.json_reader(io.StringIO(lines), schema):
            if topic == "bookings-avro":
                value = serialize(event, SerializationContext(topic, MessageField.VALUE))
            else:
                buffer = io.BytesIO()
                fastavro.schemaless_writer(buffer, schema, event)
                value = buffer.getvalue()
            producer.produce(topic, key=cast(dict[str, Any], event)["customer"]["id"], value=value)
            count += 1
    producer.flush(10)
    return count


class ExistingKafka:
    """A broker the user runs (``demo --bootstrap-servers``), seen as the demo needs it."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        settings: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": logs.kafka_logger()}
        self._admin = AdminClient(settings)
        with asking_kafka(f"--bootstrap-servers {bootstrap_servers}"):  # unreachable: one line
            self._admin.list_topics(timeout=10)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create the topic unless it exists."""
        future = self._admin.create_topics([NewTopic(name, partitions)])[name]
        with asking_kafka(f"creating the topic {name}"):
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def __enter__(self) -> ExistingKafka:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "demo-reader", "logger": logs.kafka_logger()}
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    return int(high)


def read_topic(bootstrap: str, topic: str, start: int = 0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "demo-reader",
            "logger": logs.kafka_logger(),
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, start)])
    messages = []
    while True:
        message = consumer.poll(5)
        if message is None or message.error():
            break
        messages.append(message)
    consumer.close()
    return messages


def committed(bootstrap: str, group: str, topics: dict[str, int]) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": logs.kafka_logger()})
    partitions = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
    lines = []
    for tp in consumer.committed(partitions, timeout=10):
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        done = "empty" if high == 0 else f"committed {tp.offset:>3} of {high}"
        lines.append(f"  {tp.topic}[{tp.partition}]  {done}")
    consumer.close()
    return lines


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*map(str, r)) for r in rows]
    )


def received_rows(requests: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for request in requests:
        body = request["body"]
        target = body.get("assetId") or body.get("properties", {}).get("journeyIdToTrigger", "")
        rows.append(
            [request["action"], body["event"], body.get("userId", ""), target, body.get("timestamp", "")]
        )
    return sorted(rows, key=lambda r: (r[2], r[4], r[1]))


def dead_letter_rows(messages: list[Any]) -> list[list[str]]:
    rows = []
    for message in messages:
        headers = DeadLetterHeaders.of(record_from_message(message))
        source = f"{headers.source_topic}[{headers.source_partition}]@{headers.source_offset}"
        rows.append([source, headers.error_class or "", headers.rule or "", (headers.reason or "")[:90]])
    return rows


def run_part(
    cluster: MockCluster | ExistingKafka,
    sandbox: Sandbox,
    config_name: str,
    group: str,
    topics: dict[str, int],
    log_level: str,
    audit: bool = False,
) -> int:
    """Run the bridge with one example config until it catches up, then show what happened."""
    seen = sandbox.state.listing("requests", 0)["total"]
    os.environ["KAFKA_GROUP_ID"] = group
    with tempfile.TemporaryDirectory() as directory:
        loaded = with_audit_and_dedupe(config_name, directory) if audit else load(str(EXAMPLES / config_name))
    config, mapper, decoder = loaded
    dlq = config.delivery.dead_letter_topic or ""
    dead_from = end_offset(cluster.bootstrap_servers, dlq)
    logs.configure(log_level, sys.stderr)
    bridge = build_bridge(config, mapper, f"examples/{config_name}", until_caught_up=True, decoder=decoder)
    code = asyncio.run(bridge.run())
    requests = sandbox.state.listing("requests", seen)["requests"]
    print(f"Intilery sandbox accepted {len(requests)} calls:\n")
    print(table(received_rows(requests), ["action", "event", "userId", "asset / journey", "timestamp"]))
    dead = read_topic(cluster.bootstrap_servers, dlq, dead_from)
    print(f"\nDead-letter topic {dlq} received {len(dead)} records:\n")
    print(table(dead_letter_rows(dead), ["source", "class", "rule", "reason"]))
    print(f"\nCommitted offsets of group {group}:")
    print("\n".join(committed(cluster.bootstrap_servers, group, topics)))
    if audit:
        print(f"\nWhy did {TOLD} get these messages? (intilery-bridge trace --user {TOLD}):\n")
        customer_story(loaded, TOLD, None).report(sys.stdout)
        copies = bridge.counts["deduplicated"]
        print(
            f"\nCopies not sent (rule abandoned-sms's dedupe, docs/safety.md): {copies}; booking "
            f"{COPIED}'s event was produced twice, as a producer's retry does"
        )
    return code


def embedded_kafka() -> MockCluster:
    """librdkafka's mock cluster, which the container image leaves out."""
    try:
        from bridge.devtools.mockcluster import MockCluster
    except ModuleNotFoundError as exc:
        raise ConfigError(
            [
                "demo: the embedded Kafka is not in this installation (the container image leaves it "
                "out): give --bootstrap-servers HOST:PORT, or run the demo from pip install"
            ]
        ) from exc
    return MockCluster()


def run_demo(log_level: str = "warning", bootstrap_servers: str | None = None) -> int:
    kafka = ExistingKafka(bootstrap_servers) if bootstrap_servers else embedded_kafka()
    with kafka as cluster, Sandbox(token=TOKEN) as sandbox, LocalRegistry() as registry:
        for topic, partitions in {**JSON_TOPICS, **AVRO_TOPICS}.items():
            cluster.create_topic(topic, partitions)
        for topic in ("bookings.intilery-dlq", "bookings-avro.intilery-dlq", AUDIT_TOPIC):
            cluster.create_topic(topic, 1)
        sandbox.state.set_faults({"reject": {"userId": "C-BLOCKED"}})
        os.environ.update(
            KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap_servers,
            INTILERY_URL=sandbox.url,
            INTILERY_AUTH_TOKEN=TOKEN,
            SCHEMA_REGISTRY_URL=registry.url,
            OBSERVABILITY_PORT="0",
        )
        where = "Kafka" if bootstrap_servers else "embedded Kafka"
        print(
            f"{where} at {cluster.bootstrap_servers}, sandbox at {sandbox.url}, "
            f"schema registry at {registry.url}\n"
        )
        produced = produce_json(cluster.bootstrap_servers)
        print(
            f"== JSON: produced {produced} records to {', '.join(JSON_TOPICS)}; running the bridge with "
            "examples/bridge.yaml until it catches up...\n"
        )
        code = run_part(cluster, sandbox, "bridge.yaml", "intilery-bridge-demo", JSON_TOPICS, log_level, True)
        produced = produce_avro(cluster.bootstrap_servers, registry.url)
        print(
            f"\n== Avro: produced {produced} records to {', '.join(AVRO_TOPICS)}; running the bridge with "
            "examples/bridge-avro.yaml until it catches up...\n"
        )
        code = code or run_part(
            cluster, sandbox, "bridge-avro.yaml", "intilery-bridge-avro-demo", AVRO_TOPICS, log_level
        )
        print(f"\n{closing_hint()}")
    return code
