"""The dead-letter writer without a broker: headers, retries of a failed write, and a
record too large for the topic written without its value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from structlog.testing import capture_logs

from bridge.errors import MappingError
from bridge.kafka.deadletter import (
    HEADERS_OMITTED,
    KEY_OMITTED,
    REASON_LIMIT,
    TIME_OMITTED,
    VALUE_OMITTED,
    DeadLetters,
    dead_letter_headers,
    original_of,
)
from bridge.kafka.window import Window
from bridge.logs import register_secret
from bridge.model import Record

RECORD = Record("bookings", 2, 41, b"C-1", b'{"type": "x"}', [("source", b"web")], 1_700_000_000_000)


class FakeProducer:
    """Answers each produce() from a script: None (written), a KafkaError for the delivery
    report, or an exception to raise from produce() itself; records every write."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.writes: list[dict[str, Any]] = []
        self.reports: list[Callable[[], None]] = []

    def produce(self, topic: str, **write: Any) -> None:
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        self.writes.append({"topic": topic, **write})
        self.reports.append(lambda: write["on_delivery"](outcome, None))

    def poll(self, timeout: float) -> None:
        reports, self.reports = self.reports, []
        for report in reports:
            report()


async def drive(dead_letters: DeadLetters, producer: FakeProducer, done: list[str], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not done and asyncio.get_running_loop().time() < deadline:
        producer.poll(0)
        await asyncio.sleep(0.005)


def test_the_record_is_written_unchanged_with_the_bridge_headers() -> None:
    register_secret("s3cret-token")
    producer = FakeProducer([None])
    dead_letters, done = DeadLetters("dlq", producer), []
    error = MappingError("userId: required (token s3cret-token)", rule="abandoned-sms")
    dead_letters.send(RECORD, error, lambda: done.append("done"))
    assert done == [] and dead_letters.pending == 1  # only once the broker acknowledged it
    producer.poll(0)
    assert done == ["done"] and dead_letters.pending == 0
    (write,) = producer.writes
    assert (write["topic"], write["key"], write["value"], write["timestamp"]) == (
        "dlq",
        b"C-1",
        b'{"type": "x"}',
        1_700_000_000_000,
    )
    headers = dict(write["headers"])
    assert headers["source"] == b"web"
    assert headers["x-bridge-source-topic"] == b"bookings" and headers["x-bridge-source-offset"] == b"41"
    assert headers["x-bridge-error-class"] == b"mapping" and headers["x-bridge-rule"] == b"abandoned-sms"
    assert b"s3cret-token" not in headers["x-bridge-error-reason"]
    assert VALUE_OMITTED not in headers


def test_a_failed_write_is_retried_until_it_is_acknowledged_and_logged_once_per_reason() -> None:
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    producer = FakeProducer([refused, refused, BufferError("queue full"), None])
    dead_letters, done = DeadLetters("dlq", producer, retry_delay_s=0.01), []

    async def scenario() -> None:
        dead_letters.send(RECORD, MappingError("bad"), lambda: done.append("done"))
        await drive(dead_letters, producer, done, 5)

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert done == ["done"] and dead_letters.pending == 0
    assert len(producer.writes) == 3  # the BufferError never reached the broker
    failures = [line for line in logs if line["event"] == "dead_letter_write_failed"]
    assert [f["attempt"] for f in failures] == [1, 3]  # the second refusal repeats the first: not logged
    assert failures[0]["offset"] == 41 and "authorization failed" in failures[0]["error"]


def write_one(dead_letters: DeadLetters, producer: FakeProducer) -> tuple[list[str], list[dict[str, Any]]]:
    """RECORD dead-lettered, driven until written: what was done, and the log lines."""
    done: list[str] = []

    async def scenario() -> None:
        dead_letters.send(RECORD, MappingError("bad"), lambda: done.append("done"))
        await drive(dead_letters, producer, done, 5)

    with capture_logs() as logs:
        asyncio.run(scenario())
    return done, logs


def test_a_record_too_large_for_the_topic_is_written_without_its_value() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    for first in (too_large, KafkaException(too_large)):  # refused by the broker, or by produce()
        producer = FakeProducer([first, None])
        done, logs = write_one(DeadLetters("dlq", producer, retry_delay_s=0.01), producer)
        assert done == ["done"]
        last = producer.writes[-1]
        assert last["value"] is None and last["key"] == b"C-1"
        assert dict(last["headers"])[VALUE_OMITTED] == f"{len(RECORD.value or b'')} bytes".encode()
        assert [line["bytes"] for line in logs if line["event"] == "dead_letter_value_omitted"] == [13]


def test_the_reason_is_cut_at_its_bound_and_every_header_encodes() -> None:
    """A JMESPath type error once put a 900 KB value in the reason (a 1.35 MB header), and a
    lone surrogate made the header's encoding raise: neither can stop the write now."""
    error = MappingError("expression failed: " + "v" * 900_000 + "\ud800", rule="r\udc80")
    record = Record("bookings", 0, 7, b"k", b"{}", [("na\ud800me", b"x"), ("none", None)], None)
    headers = dict(dead_letter_headers(record, error))
    reason = headers["x-bridge-error-reason"]
    assert reason is not None and len(reason) < REASON_LIMIT + 100
    assert reason.endswith(b"(cut; 900020 characters in all)")
    assert headers["x-bridge-rule"] == b"r\\udc80" and headers["na\\ud800me"] == b"x"
    assert all(name.encode() for name in headers)  # every name encodes as UTF-8


def test_a_write_refused_for_its_content_is_retried_smaller_each_time() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    invalid = KafkaError(KafkaError.INVALID_TIMESTAMP)
    producer = FakeProducer([too_large, KafkaException(too_large), invalid, invalid, None])
    dead_letters = DeadLetters("dlq", producer, retry_delay_s=0.01)
    done, logs = write_one(dead_letters, producer)
    assert done == ["done"]
    # full (too large), without value (too large, refused by produce()), without headers (its
    # time refused), without its time too (invalid still), minimal (taken)
    forms = [
        (w["value"] is not None, "source" in dict(w["headers"]), w["key"] is not None, w["timestamp"] != 0)
        for w in producer.writes
    ]
    assert forms == [
        (True, True, True, True),
        (False, False, True, True),
        (False, False, True, False),
        (False, False, False, False),
    ]
    last = dict(producer.writes[-1]["headers"])
    assert last[VALUE_OMITTED] == b"13 bytes" and last[HEADERS_OMITTED] == b"1 headers"
    assert last[KEY_OMITTED] == b"3 bytes" and last[TIME_OMITTED] == b"1700000000000"
    assert last["x-bridge-source-offset"] == b"41"  # still says where the original is
    steps = [(e["event"], e.get("omitted")) for e in logs if e["event"].startswith("dead_letter_")]
    assert steps == [
        ("dead_letter_value_omitted", None),
        ("dead_letter_reduced", "headers"),
        ("dead_letter_reduced", "time"),
        ("dead_letter_reduced", "key"),
    ]
    assert dead_letters.failing_since is None  # a content refusal is no outage


def test_an_unavailable_topic_is_retried_as_it_is_and_shows() -> None:
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    producer = FakeProducer([refused, refused, None])
    dead_letters = DeadLetters("dlq", producer, retry_delay_s=0.01)
    done = []
    failures = []
    dead_letters.on_failure = lambda: failures.append(1)
    seen: list[float | None] = []

    async def scenario() -> None:
        dead_letters.send(RECORD, MappingError("bad"), lambda: done.append("done"))
        while not done:
            producer.poll(0)
            seen.append(dead_letters.failing_since)
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    assert [w["value"] for w in producer.writes] == [RECORD.value] * 3  # never reduced
    assert len(failures) == 2 and any(s is not None for s in seen)
    assert dead_letters.failing_since is None and "authorization" in (dead_letters.last_failure or "")


def test_a_refused_time_is_dropped_on_its_own() -> None:
    producer = FakeProducer([KafkaError(KafkaError.INVALID_TIMESTAMP), None])
    done, _ = write_one(DeadLetters("dlq", producer, retry_delay_s=0.01), producer)
    assert done == ["done"]
    last = producer.writes[-1]
    assert (last["value"], last["key"], last["timestamp"]) == (RECORD.value, b"C-1", 0)
    headers = dict(last["headers"])
    assert headers["source"] == b"web" and headers[TIME_OMITTED] == b"1700000000000"
    assert VALUE_OMITTED not in headers


def test_refused_even_at_its_smallest_it_is_retried_and_shows() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer = FakeProducer([too_large] * 5 + [None])
    dead_letters = DeadLetters("dlq", producer, retry_delay_s=0.01)
    seen: list[float | None] = []
    dead_letters.on_failure = lambda: seen.append(dead_letters.failing_since)
    done, _ = write_one(dead_letters, producer)
    assert done == ["done"] and len(producer.writes) == 6 and seen and all(s is not None for s in seen)


def test_a_dead_letter_keeps_the_records_trace_context_even_without_its_headers() -> None:
    trace = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("tracestate", b"a=1"),
    ]
    record = Record("bookings", 0, 1, b"k", b"{}", [("source", b"web"), *trace], None)
    error = MappingError("userId: required")
    full = dead_letter_headers(record, error)
    without = dead_letter_headers(record, error, frozenset({"value", "headers"}))
    assert [h for h in full if h[0] in ("traceparent", "tracestate", "source")] == [
        ("source", b"web"),
        *trace,
    ]
    assert [h for h in without if h[0] in ("traceparent", "tracestate", "source")] == trace
    assert dict(without)[HEADERS_OMITTED] == b"3 headers"


def test_a_source_record_cannot_forge_the_bridge_headers_and_redrive_gives_them_back() -> None:
    """A producer's own x-bridge-user-id put another customer's dead letter in trace, its
    x-bridge-rule passed redrive's --rule, its x-bridge-value-omitted made redrive refuse a
    record that has its value."""
    forged = [("x-bridge-user-id", b"C-victim"), ("x-bridge-rule", b"other"), (VALUE_OMITTED, b"9 bytes")]
    record = Record("bookings", 0, 7, b"C-1", b"{}", [("source", b"web"), *forged], None)
    headers = dead_letter_headers(record, MappingError("nope", rule="abandoned-sms"))
    bridge_headers = {name: value for name, value in headers if name.startswith("x-bridge-")}
    assert bridge_headers["x-bridge-rule"] == b"abandoned-sms"
    assert "x-bridge-user-id" not in bridge_headers and VALUE_OMITTED not in bridge_headers
    assert ("x-source-x-bridge-user-id", b"C-victim") in headers
    letter = Record("bookings.dlq", 0, 0, b"C-1", b"{}", headers, None)
    original = original_of(letter)  # redrive reads it as the record it was, forged headers and all
    assert original.headers == record.headers and original.value == b"{}"
    assert (
        Window("bookings.dlq", "g", False, redrive=True, filters={"x-bridge-rule": ("other",)}).selects(
            letter
        )
        is False
    )
