"""The fuzzing harness's edges: drivers that enter where outside bytes enter the process.

- :class:`KafkaEdge`: records produced through librdkafka itself (``tests/rawkafka.py``:
  header names as raw bytes, any key, value and time) to librdkafka's mock cluster, read back
  by the bridge's consumer code (:func:`~bridge.kafka.consumer.record_from_message`), then
  through the record path's harness (``tests/fuzzing.py``) with its invariants: every record
  delivered or dead-lettered, every good event once, commits at every end, the bridge ending
  on its own.
- :class:`IntileryEdge`: any answer (status, header bytes, body, slow, cut short) from a
  hostile HTTP server on loopback (``tests/hostile.py``), read by the real client: it ends
  delivered, retryable or rejected (a :class:`~bridge.errors.DeliveryError` or
  :class:`~bridge.errors.RejectedError`), never an exception of another kind,
  within its time-out; a ``Retry-After`` no longer than the cap; an eventId and a reason
  that always encode.

- :class:`RegistryEdge`: any answer from a hostile schema registry, read by the real
  registry client: a schema, or a ``DecodeError`` (the record's) or a ``RetryableError``
  (the registry's), never an exception of another kind.

Used by ``tests/integration/test_edge_fuzz.py`` (hypothesis, in ``make test``) and by
``make fuzz`` (``tests/fuzz.py``), which gives them a share of its time.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from hypothesis import strategies as st

from bridge.config import IntileryConfig
from bridge.decode.registry import SchemaRegistry
from bridge.devtools.mockcluster import MockCluster
from bridge.errors import DecodeError, DeliveryError, RejectedError, RetryableError
from bridge.intilery.client import MAX_EVENT_ID, IntileryClient
from bridge.kafka.consumer import record_from_message
from bridge.model import Command, Record
from tests import fuzzing
from tests.hostile import Answer, HostileServer
from tests.rawkafka import RawProducer

LONGEST_WAIT_S = 30.0
TIMEOUT_S = 0.5


class KafkaEdge:
    """A mock cluster with the harness' three topics, a raw producer and a reader."""

    def __init__(self) -> None:
        self.cluster = MockCluster()
        for topic in fuzzing.TOPICS:
            self.cluster.create_topic(topic)
        self.producer = RawProducer(self.cluster.bootstrap_servers, **{"message.max.bytes": "2000000"})
        self.consumer = Consumer(
            {"bootstrap.servers": self.cluster.bootstrap_servers, "group.id": "edge", "log_level": 0}
        )
        self.consumer.assign([TopicPartition(topic, 0, 0) for topic in fuzzing.TOPICS])
        self.harness = fuzzing.harness()

    def check(self, batch: list[tuple[Record, list[tuple[bytes, bytes | None]]]]) -> dict[str, Any]:
        """Produce each record with its raw headers, read them back through the consumer's
        code, then run them through the record path."""
        for record, raw_headers in batch:
            stamp = record.timestamp_ms if record.timestamp_ms and 0 < record.timestamp_ms < 2**62 else 0
            self.producer.produce(record.topic, record.value, record.key, raw_headers, 0, stamp)
        self.producer.flush()
        read: list[Record] = []
        deadline = time.monotonic() + 20
        while len(read) < len(batch) and time.monotonic() < deadline:
            for message in self.consumer.consume(len(batch) - len(read), 0.5):
                if message.error() is None:
                    read.append(record_from_message(message))
        assert len(read) == len(batch), f"{len(read)} of {len(batch)} records read back"
        for (record, raw_headers), back in zip(
            sorted(batch, key=_topic), sorted(read, key=_topic), strict=True
        ):
            assert (back.key, back.value) == (record.key, record.value)
            decodable = all(_utf8(name) for name, _ in raw_headers)
            assert back.headers == ([(n.decode(), v) for n, v in raw_headers] if decodable else [])
        return self.harness.check(read)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
        self.cluster.close()


def _topic(pair: Any) -> str:
    record = pair[0] if isinstance(pair, tuple) else pair
    return str(record.topic)


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def raw_headers(record: Record, names: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    """The record's headers with these raw names (a C string each: no NUL)."""
    return [
        (name.replace(b"\x00", b""), value) for name, (_, value) in zip(names, record.headers, strict=False)
    ]


header_names = st.binary(max_size=12) | st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass"))


SMS = Command(
    rule="r",
    action="track",
    payload=b'{"event":"send_sms","userId":"u","assetId":"a"}',
    body={"event": "send_sms", "userId": "u", "assetId": "a"},
)


class IntileryEdge:
    """A hostile server and, per answer, the real client posting one command to it."""

    def __init__(self) -> None:
        self.server = HostileServer().__enter__()
        self.config = IntileryConfig(
            url=self.server.url, client_id="acme", account_id="acme", auth_token="t0ken", timeout_s=TIMEOUT_S
        )

    def check(self, answer: Answer) -> None:
        self.server.answer(answer)
        try:  # never held past the time-out: wait_for's TimeoutError fails the check
            delivered = asyncio.run(asyncio.wait_for(self._post(), 10 * TIMEOUT_S + 5))
        except (DeliveryError, RejectedError) as exc:
            json.dumps(exc.reason).encode()
            after = getattr(exc, "retry_after", None)
            assert after is None or (math.isfinite(after) and 0 <= after <= LONGEST_WAIT_S), after
        else:
            assert 200 <= delivered.status < 300, delivered
            event_id = delivered.event_id
            assert event_id is None or (event_id.isprintable() and len(event_id) <= MAX_EVENT_ID), event_id
        self.server.answers.clear()

    async def _post(self) -> Any:
        client = IntileryClient(self.config, 2, longest_wait_s=LONGEST_WAIT_S)
        try:
            return await client.post(SMS)
        finally:
            await client.close()

    def close(self) -> None:
        self.server.__exit__(None, None, None)


class RegistryEdge:
    """A hostile server as the schema registry, asked for one schema id per answer."""

    def __init__(self) -> None:
        self.server = HostileServer().__enter__()

    def check(self, answer: Answer) -> None:
        self.server.answer(answer)
        registry = SchemaRegistry(self.server.url)
        try:
            registry.fetch(1)
        except (DecodeError, RetryableError) as exc:
            json.dumps(exc.reason).encode("utf-8", "backslashreplace")
        finally:
            registry.close()
            self.server.answers.clear()

    def close(self) -> None:
        self.server.__exit__(None, None, None)


def _registry_error(code: int, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


registry_answers = st.builds(
    Answer,
    status=st.sampled_from([200, 200, 200, 404, 500, 401, 302, 999]),
    headers=st.just([(b"Content-Type", b"application/vnd.schemaregistry.v1+json")]),
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda schema, kind: json.dumps({"schema": schema, "schemaType": kind}).encode(),
            st.text(max_size=60) | st.just('{"type": "record", "name": "R", "fields": []}'),
            st.none() | st.sampled_from(["AVRO", "PROTOBUF", "JSON"]) | st.text(max_size=5),
        ),
        st.builds(_registry_error, st.integers(), st.text(max_size=30)),
        st.integers(0, 3000).map(lambda n: b'{"schema": ' + b"[" * n),
    ),
)


_BODIES = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda ok, event_id: json.dumps({"success": ok, "eventId": event_id}).encode(),
        st.none() | st.booleans(),
        st.none() | st.integers() | st.text(max_size=40) | st.lists(st.integers(), max_size=3),
    ),
    st.integers(0, 3000).map(lambda n: b"[" * n),
)
_HEADER_LINES = st.lists(
    st.tuples(
        st.sampled_from(
            [b"Retry-After", b"Content-Type", b"Content-Length", b"Content-Encoding", b"Location"]
        )
        | st.binary(min_size=1, max_size=10),
        st.binary(max_size=30)
        | st.sampled_from(
            [b"315360000", b"inf", b"nan", b"-1", b"1e400", b"Fri, 31 Dec 9999 23:59:59 GMT", b"gzip"]
        ),
    ),
    max_size=4,
)
answers = st.builds(
    Answer,
    status=st.integers(100, 999),
    headers=_HEADER_LINES,
    body=_BODIES,
    delay_s=st.sampled_from([0.0, 0.0, 0.0, 0.1, TIMEOUT_S + 0.2]),
    cut=st.none() | st.integers(0, 200),
)
