"""``intilery-bridge demo``: the whole flow on one machine, nothing to install.

Starts an embedded Kafka (librdkafka's mock cluster) and the sandbox, produces
the sample events of ``examples/events/`` (plus one record that is not JSON),
runs the bridge with ``examples/bridge.yaml`` until it has caught up, then
prints what the sandbox received, what was dead-lettered, and the committed
offsets.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from . import logs
from .cli import load
from .pipeline import Bridge
from .sandbox import Sandbox
from .testing.mockcluster import MockCluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOPICS = {"bookings": 3, "app-events": 1, "bookings.intilery-dlq": 1}
TOKEN = "demo-token-not-a-secret"


def produce_samples(bootstrap: str) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "logger": logs.kafka_logger()})
    count = 0
    for path in sorted((EXAMPLES / "events").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                key = json.loads(line).get("customer", {}).get("id")
                producer.produce(path.stem, key=key, value=line.encode())
                count += 1
    producer.produce("bookings", key="C-1002", value=b'{"type": "booking_abandoned", "channel": ')
    producer.flush(10)
    return count + 1


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "demo-reader",
            "logger": logs.kafka_logger(),
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages = []
    while True:
        message = consumer.poll(5)
        if message is None or message.error():
            break
        messages.append(message)
    consumer.close()
    return messages


def committed(bootstrap: str, group: str) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": logs.kafka_logger()})
    partitions = [TopicPartition(t, p) for t, n in TOPICS.items() if not t.endswith("dlq") for p in range(n)]
    lines = []
    for tp in consumer.committed(partitions, timeout=10):
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        lines.append(f"  {tp.topic}[{tp.partition}]  committed {tp.offset:>3} of {high}")
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


def run_demo(log_level: str = "warning") -> int:
    with MockCluster() as cluster, Sandbox(token=TOKEN) as sandbox:
        for topic, partitions in TOPICS.items():
            cluster.create_topic(topic, partitions)
        sandbox.state.set_faults({"reject": {"userId": "C-BLOCKED"}})
        os.environ.update(
            KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap_servers,
            INTILERY_URL=sandbox.url,
            INTILERY_AUTH_TOKEN=TOKEN,
            KAFKA_GROUP_ID="intilery-bridge-demo",
        )
        produced = produce_samples(cluster.bootstrap_servers)
        print(f"embedded Kafka at {cluster.bootstrap_servers}, sandbox at {sandbox.url}")
        print(
            f"produced {produced} records to {', '.join(t for t in TOPICS if 'dlq' not in t)}; "
            f"running the bridge with examples/bridge.yaml until it catches up...\n"
        )
        config, mapper = load(str(EXAMPLES / "bridge.yaml"))
        logs.configure(log_level, sys.stderr)
        code = asyncio.run(Bridge(config, mapper, "examples/bridge.yaml", until_caught_up=True).run())
        requests = sandbox.state.listing("requests", 0)["requests"]
        print(f"Intilery sandbox accepted {len(requests)} calls:\n")
        print(table(received_rows(requests), ["action", "event", "userId", "asset / journey", "timestamp"]))
        dead = read_topic(cluster.bootstrap_servers, "bookings.intilery-dlq")
        print(f"\nDead-letter topic bookings.intilery-dlq holds {len(dead)} records:\n")
        rows = []
        for message in dead:
            headers = {k: (v or b"").decode() for k, v in message.headers() or []}
            rows.append(
                [
                    f"{headers['x-bridge-source-topic']}[{headers['x-bridge-source-partition']}]"
                    f"@{headers['x-bridge-source-offset']}",
                    headers["x-bridge-error-class"],
                    headers.get("x-bridge-rule", ""),
                    headers["x-bridge-error-reason"][:90],
                ]
            )
        print(table(rows, ["source", "class", "rule", "reason"]))
        print("\nCommitted offsets of group intilery-bridge-demo:")
        print("\n".join(committed(cluster.bootstrap_servers, "intilery-bridge-demo")))
        print(
            "\nTry your own rules offline: intilery-bridge map --config examples/bridge.yaml "
            "examples/events/bookings.jsonl"
        )
    return code
