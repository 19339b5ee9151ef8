"""What the tests share, imported (fixtures live in conftest.py): the test's view of a
Kafka cluster, the configurations and events they use, running the bridge as users
run it (a subprocess, or a verb in this process), reading what it did, and the
drills' report table."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry.error import SchemaRegistryError

from bridge import logs
from bridge.cli import main
from bridge.devtools.kafka import KafkaCluster
from bridge.devtools.mockcluster import MockCluster
from bridge.devtools.sandbox import Sandbox

TOKEN = "test-token-5f2b9c"

T = TypeVar("T")


SASL_PASSWORD = "sasl-pw-9d1e77"


REGISTRY_AUTH = "drill-user:registry-pw-4c2a1b"


# What must never appear in any output: logs, error messages, dead-letter headers.
SECRETS = (TOKEN, SASL_PASSWORD, REGISTRY_AUTH, REGISTRY_AUTH.split(":")[1])


_TEST_NUMBERS = itertools.count(1)


class TestKafka:
    """One test's view of a Kafka cluster: the bootstrap servers and topic names of
    its own, so tests can share one broker without seeing each other's records."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, backend: KafkaCluster | MockCluster) -> None:
        self.backend = backend
        self.tag = f"t{next(_TEST_NUMBERS)}"
        self.topic = self.name("bookings")
        self.dlq = self.name("bookings.dlq")

    @property
    def bootstrap_servers(self) -> str:
        return self.backend.bootstrap_servers

    def name(self, base: str) -> str:
        """This test's name for a topic (or group) called ``base``."""
        return f"{base}-{self.tag}"

    def create_topic(self, name: str, partitions: int = 1, **config: str) -> None:
        """Create a topic (``config``: topic settings, on a real broker only)."""
        if isinstance(self.backend, MockCluster):
            assert not config, "the mock cluster takes no topic settings"
            self.backend.create_topic(name, partitions)
        else:
            self.backend.create_topic(name, partitions, **config)


# The ways a group can move partitions (docs/operations.md, Scaling): librdkafka's default eager
# assignors (range,roundrobin), cooperative-sticky, and KIP-848 (the broker assigns).
GROUP_PROTOCOLS: dict[str, dict[str, Any]] = {
    "eager": {},
    "cooperative": {"partition.assignment.strategy": "cooperative-sticky"},
    "kip848": {"group.protocol": "consumer"},
}


def with_protocol(kafka: dict[str, Any], protocol: str) -> dict[str, Any]:
    if protocol == "kip848":  # the broker owns the session and heartbeat settings
        kafka = {k: v for k, v in kafka.items() if k not in ("session.timeout.ms", "heartbeat.interval.ms")}
    return kafka | GROUP_PROTOCOLS[protocol]


def base_config(cluster: TestKafka, sandbox_url: str, group: str, **delivery: Any) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        },
        "source": {"topics": [cluster.topic], "format": "json"},
        "intilery": {
            "url": sandbox_url,
            "client_id": "acme",
            "account_id": "acme",
            "brand_id": "ACME",
            "auth_token": "${TEST_INTILERY_TOKEN}",
            "timeout_s": 5,
            "rate_limit": {"per_second": 0},
        },
        "delivery": {
            "max_in_flight": 16,
            "dead_letter_topic": cluster.dlq,
            "shutdown_grace_s": 5,
            "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500},
            **delivery,
        },
        "log": {"level": "info", "summary_interval_s": 2},
        "observability": {"host": "127.0.0.1", "port": 0},
        "rules": [
            {
                "name": "abandoned-sms",
                "when": "type == 'booking_abandoned' && channel == 'sms'",
                "emit": {
                    "event": "send_sms",
                    "userId": "{{ customer.id }}",
                    "assetId": "ASSET-SMS",
                    "timestamp": "{{ occurredAt }}",
                    "bookingId": "{{ booking.id }}",
                    "seq": "{{ seq }}",
                },
            },
            {
                "name": "abandoned-email",
                "when": "type == 'booking_abandoned' && channel == 'email'",
                "emit": {
                    "event": "SEND_EMAIL",
                    "userId": "{{ customer.id }}",
                    "assetId": "ASSET-EMAIL",
                    "subject": "Your booking {{ booking.id }} is waiting",
                    "seq": "{{ seq }}",
                },
            },
            {
                "name": "big-basket",
                "when": "type == 'booking_abandoned' && booking.value > `1000`",
                "emit": {
                    "event": "start_journey",
                    "userId": "{{ customer.id }}",
                    "seq": "{{ seq }}",
                    "properties": {"journeyIdToTrigger": "J-1", "stepIdToTrigger": "{{ booking.stepId }}"},
                },
            },
            {
                "name": "identify",
                "when": "type == 'customer_registered'",
                "emit": {
                    "event": "identify",
                    "userId": "{{ customer.id }}",
                    "seq": "{{ seq }}",
                    "traits": {"email": "{{ customer.email }}"},
                },
            },
            {
                "name": "print",
                "when": "type == 'letter'",
                "emit": {
                    "event": "send_print",
                    "userId": "{{ customer.id }}",
                    "assetId": "ASSET-PRINT",
                    "seq": "{{ seq }}",
                    "partition": "{{ _kafka.partition }}",
                },
            },
            {
                "name": "push",
                "when": "type == 'app_reminder'",
                "emit": {
                    "event": "send_push",
                    "userId": "{{ customer.id }}",
                    "assetId": "ASSET-PUSH",
                    "seq": "{{ seq }}",
                    "source": "{{ _kafka.headers.source }}",
                },
            },
            {
                "name": "viewed",
                "when": "type == 'booking_viewed'",
                "emit": {
                    "event": "Booking Viewed",
                    "userId": "{{ customer.id }}",
                    "seq": "{{ seq }}",
                    "properties": {"bookingId": "{{ booking.id }}"},
                },
            },
        ],
    }


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def bridge_env() -> dict[str, str]:
    return {
        **os.environ,
        "TEST_INTILERY_TOKEN": TOKEN,
        "TEST_SASL_PASSWORD": SASL_PASSWORD,
        "TEST_REGISTRY_AUTH": REGISTRY_AUTH,
        "PYTHONUNBUFFERED": "1",
    }


def start_bridge(config_path: Path, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(config_path), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=bridge_env(),
        )


def sms_event(seq: int, customers: int, occurred: Any = "2026-11-01T00:00:00Z") -> dict[str, Any]:
    """An abandoned-booking event the first rule of ``base_config`` turns into one send_sms."""
    return {
        "type": "booking_abandoned",
        "channel": "sms",
        "seq": seq,
        "occurredAt": occurred,
        "customer": {"id": f"C-{seq % customers}"},
        "booking": {"id": f"B-{seq}", "value": 1},
    }


class CheckedProducer(Producer):
    """A producer whose ``flush`` fails the test unless every record reached the broker
    (a plain flush returns 0 after a delivery failure too: the record is silently gone)."""

    def __init__(self, bootstrap: str, config: dict[str, Any] | None = None) -> None:
        super().__init__({"bootstrap.servers": bootstrap, **(config or {})})
        self.failures: list[str] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        super().produce(*args, on_delivery=self._delivered, **kwargs)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(f"{message.topic()}: {error.str()}")

    def flush(self, timeout: float = 30) -> int:
        left = super().flush(timeout)
        assert left == 0 and not self.failures, f"{left} records undelivered; failures {self.failures[:3]}"
        return left


def produce_events(
    bootstrap: str, topic: str, events: Iterable[dict[str, Any]], timestamps: Iterable[int] | None = None
) -> None:
    """Produce JSON events keyed by their customer id (at the given timestamps, in ms)."""
    # Idempotent: a retried produce (a leader moving) must not write a record twice.
    producer = CheckedProducer(bootstrap, {"linger.ms": 20, "enable.idempotence": True})
    times = iter(timestamps) if timestamps is not None else itertools.repeat(0)
    for number, event in enumerate(events):
        key, value = event["customer"].get("id"), json.dumps(event).encode()
        producer.produce(topic, key=key, value=value, timestamp=next(times))
        if number % 1000 == 0:
            producer.poll(0)
    producer.flush()


def _end_offset(consumer: Consumer, topic: str, partition: int) -> int:
    """The high watermark; 0 for a partition that does not exist (or may not be read)."""
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    except KafkaException:
        return 0


def read_all(bootstrap: str, topic: str, partitions: int = 1) -> list[Any]:
    """Every record of the topic, up to the high watermarks read first."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader"})
    ends = {p: _end_offset(consumer, topic, p) for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages, remaining = [], {p for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + 20
    while remaining and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is None or message.error():  # no end-of-partition events asked for: transient
            continue
        messages.append(message)
        if message.offset() + 1 >= ends[message.partition()]:
            remaining.discard(message.partition())
    consumer.close()
    assert not remaining, f"{topic}: partitions {sorted(remaining)} not read to their end in 20 s"
    return messages


def committed_and_ends(bootstrap: str, group: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    result = [(tp.offset, consumer.get_watermark_offsets(tp, timeout=10)[1]) for tp in tps]
    consumer.close()
    return result


def accepted(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every call the sandbox accepted, batch requests flattened into their calls."""
    calls = []
    for request in sandbox.state.listing("requests", 0)["requests"]:
        if request["action"] != "batch":
            calls.append(request)
            continue
        for call in request["body"]["batch"]:
            action = "identify" if call["event"] == "identify" else "track"
            calls.append(
                {
                    "action": action,
                    "at": request["at"],
                    "body": call,
                    "eventId": request["eventId"],
                    **{name: request[name] for name in ("traceparent", "tracestate") if name in request},
                }
            )
    return calls


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Sequence[subprocess.Popen[bytes]] = (),
) -> None:
    """Wait until ``predicate``; fails at once when a process in ``alive`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        exited = [f"pid {p.pid} exit code {p.returncode}" for p in alive if p.poll() is not None]
        assert not exited, f"waiting for {what}, a process exited: {', '.join(exited)}"
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def eventually(found: Callable[[], T | None], timeout: float, what: str) -> T:
    """What ``found()`` gives once it gives something (not None), within ``timeout``."""
    seen: list[T] = []

    def arrived() -> bool:
        value = found()
        if value is not None:
            seen.append(value)
        return value is not None

    wait_for(arrived, timeout, what)
    return seen[0]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """:func:`wait_for` on the event loop: the loop goes on while it waits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def log_events(log_path: Path) -> list[dict[str, Any]]:
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def with_ownership(events: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], set[str]]]:
    """Each log event of one bridge with the partitions it held at that moment."""
    owned: set[str] = set()
    for event in events:
        if event["event"] == "partitions_assigned":
            owned = owned | set(event["partitions"])
        elif event["event"] in ("partitions_revoked", "partitions_lost"):
            owned = owned - set(event["partitions"])
        yield event, owned


COLUMNS = ("drill", "broker", "records", "lost", "duplicated", "dead-lettered", "time to recover", "notes")


def drill_rows_file() -> Path:
    """Where this run's drills write their rows: drills may run in several xdist workers
    (children of the controlling process, which prints one table at the end)."""
    controller = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
    return Path(__file__).parent.parent / ".pytest_cache" / f"drill-rows-{controller}.jsonl"


def drill_table(table: list[tuple[str, ...]]) -> str:
    """The drills' rows in the order of their numbers (1, 2, ..., 10), as Markdown."""
    rows = [COLUMNS, *sorted(table, key=lambda row: (int(re.match(r"\d*", row[0]).group() or 0), row[0]))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


_STDERR = sys.stderr  # the test process's own: it stays open after any one test


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """A verb run in this process: its exit code, standard output and error. The verbs
    point the log lines at ``sys.stderr``, which capsys closes after the test: they are
    pointed back at the process's own afterwards, or a later test's log line would fail."""
    try:
        code = main(list(args))
    finally:
        logs.configure("warning", _STDERR)
    out, err = capsys.readouterr()
    return code, out, err


class FakeRegistryClient:
    """Stands in for confluent-kafka's client: answers from a dict, or raises."""

    def __init__(self, schemas: dict[int, str], error: Exception | None = None) -> None:
        self.schemas = schemas
        self.error = error
        self.calls = 0

    def get_schema(self, schema_id: int) -> Any:
        self.calls += 1
        if self.error:
            raise self.error
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")

        class Registered:
            schema_type = "AVRO"
            schema_str = self.schemas[schema_id]

        return Registered()
