"""The dead-letter producer for records that can never be delivered.

Takes a :class:`~bridge.model.Record` and the :class:`~bridge.errors.RecordError`
that condemned it; writes the record to the dead-letter topic with its key,
value and headers unchanged plus ``x-bridge-*`` headers, and calls ``on_done``
only once the broker has acknowledged the write.

A dead letter always encodes and always fits: the reason is cut at
:data:`REASON_LIMIT` characters (its full length noted), every header value is UTF-8
with what is not valid escaped, and a write refused for its content (too large, an
invalid record or timestamp) is retried in a reduced form at once: a refused time is
dropped on its own first (``x-bridge-time-omitted`` keeps it); otherwise each form is
smaller than the one before: without its value (``x-bridge-value-omitted``), then
without the source's headers (``x-bridge-headers-omitted``), then without its key and
its time (``x-bridge-key-omitted``); the ``x-bridge-*`` headers say where the original
is, for ``replay``. Refused even at its smallest, it is retried as it is and shows as
below. Only a write refused for availability (broker down, ACL, queue full) is
retried as it is, every second (``retry_delay_s``) and logged once per reason per 10 s;
meanwhile :attr:`DeadLetters.failing_since` says so to readiness and a metric counts it.
The record's offset stays uncommitted until the write succeeds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.errors import RecordError
from bridge.kafka.consumer import built
from bridge.logs import Repeats, kafka_logger, redact
from bridge.model import Record
from bridge.tracing import TRACEPARENT, TRACESTATE

log = structlog.get_logger("bridge.kafka.deadletter")

VALUE_OMITTED = "x-bridge-value-omitted"
HEADERS_OMITTED = "x-bridge-headers-omitted"
KEY_OMITTED = "x-bridge-key-omitted"
TIME_OMITTED = "x-bridge-time-omitted"
REASON_LIMIT = 1024  # characters of x-bridge-error-reason
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})  # kept even when the source's headers are not
# What a dead letter is written without: each size step smaller than the one before; a
# refused time is dropped on its own first.
Form = frozenset[str]
FULL: Form = frozenset()
NO_VALUE: Form = frozenset({"value"})
NO_HEADERS: Form = NO_VALUE | {"headers"}
MINIMAL: Form = NO_HEADERS | {"key", "time"}

# Refusals of what was written, not of writing: a smaller form may pass.
_CONTENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.INVALID_MSG,  # CORRUPT_MESSAGE
        KafkaError.INVALID_MSG_SIZE,
    }
)

# Consumer-only properties that the producer would warn about.
_CONSUMER_ONLY = (
    "group.id",
    "group.instance.id",
    "auto.offset.reset",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "enable.partition.eof",
    "fetch.",
    "queued.",
    "isolation.level",
    "check.crcs",
    "group.protocol",
    "auto.commit.interval.ms",
    "fetch.wait.max.ms",
)


def producer_config(kafka: dict[str, Any]) -> dict[str, Any]:
    conf = {k: v for k, v in kafka.items() if not k.startswith(_CONSUMER_ONLY)}
    return {**conf, "acks": "all", "enable.idempotence": True, "linger.ms": 5}


_CONTENT = -1  # not a Kafka error: the client could not take this content


def _smaller(form: Form, code: int | None) -> Form | None:
    """The form to try at once after a refusal with ``code``; None: try the same later."""
    if code == KafkaError.INVALID_TIMESTAMP and "time" not in form:
        return form | {"time"}
    if code not in _CONTENT_ERRORS and code != _CONTENT:
        return None
    for step in (NO_VALUE, NO_HEADERS, MINIMAL):
        if not step <= form:
            return form | step
    return None


def bounded_reason(reason: str) -> str:
    """The reason, secrets redacted, cut at :data:`REASON_LIMIT` characters with its length noted."""
    reason = redact(reason)
    if len(reason) <= REASON_LIMIT:
        return reason
    return f"{reason[:REASON_LIMIT]}... (cut; {len(reason)} characters in all)"


def header_bytes(text: str) -> bytes:
    """UTF-8 that always encodes: a lone surrogate or the like is written escaped."""
    return text.encode("utf-8", "backslashreplace")


def dead_letter_headers(
    record: Record, error: RecordError, form: Form = FULL, rules_version: str | None = None
) -> list[tuple[str, bytes | None]]:
    extra = {
        "x-bridge-source-topic": record.topic,
        "x-bridge-source-partition": str(record.partition),
        "x-bridge-source-offset": str(record.offset),
        "x-bridge-error-class": error.error_class,
        "x-bridge-error-reason": bounded_reason(error.reason),
    }
    if error.rule:
        extra["x-bridge-rule"] = error.rule[:REASON_LIMIT]
    if error.status is not None:
        extra["x-bridge-http-status"] = str(error.status)
    if rules_version is not None:
        extra["x-bridge-rules-version"] = rules_version
    if "value" in form:
        extra[VALUE_OMITTED] = f"{len(record.value or b'')} bytes"
    if "headers" in form:
        extra[HEADERS_OMITTED] = f"{len(record.headers)} headers"
    if "key" in form:
        extra[KEY_OMITTED] = f"{len(record.key or b'')} bytes"
    if "time" in form and record.timestamp_ms is not None:
        extra[TIME_OMITTED] = str(record.timestamp_ms)  # the record's own time, in epoch ms
    source = [(header_text(k), v) for k, v in record.headers if "headers" not in form or k in TRACE_HEADERS]
    return [*source, *((k, header_bytes(v)) for k, v in extra.items())]


def header_text(name: str) -> str:
    """A header name the producer can encode."""
    return header_bytes(name).decode("utf-8")


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter on its way: the record, why, whom to tell, and the rules' version."""

    record: Record
    error: RecordError
    on_done: Callable[[], None]
    rules_version: str | None


class DeadLetters:
    def __init__(self, topic: str, producer: Any, retry_delay_s: float = 1.0) -> None:
        self.topic = topic
        self._producer = producer
        self._retry_delay = retry_delay_s
        self.pending = 0
        self.fatal: str | None = None
        self.failing_since: float | None = None  # every write refused for availability since then
        self.last_failure: str | None = None
        self.on_failure: Callable[[], None] = lambda: None  # counted by the bridge's metrics
        self._repeats = Repeats()
        self._failures = Repeats()

    @classmethod
    def create(cls, topic: str, kafka: dict[str, Any]) -> DeadLetters:
        dead_letters = cls(topic, None)
        callbacks = {"error_cb": dead_letters._error, "logger": kafka_logger()}
        dead_letters._producer = built(Producer, {**producer_config(kafka), **callbacks})
        return dead_letters

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = error.str()
        repeated = self._repeats.allow(error.str())
        if error.fatal() or repeated is not None:
            extra = {"repeated": repeated} if repeated else {}
            log.warning("dead_letter_producer_error", error=error.str(), fatal=error.fatal(), **extra)

    def send(
        self,
        record: Record,
        error: RecordError,
        on_done: Callable[[], None],
        rules_version: str | None = None,
    ) -> None:
        """Write ``record`` with ``error`` (and the version of the rules that mapped it);
        ``on_done`` once the broker has it."""
        self._write(Letter(record, error, on_done, rules_version), 1, FULL)

    def _write(self, letter: Letter, attempt: int, form: Form) -> None:
        self.pending += 1
        record = letter.record

        def delivered(err: KafkaError | None, _message: Any) -> None:
            self.pending -= 1
            if err is None:
                self.failing_since = None
                letter.on_done()
            else:
                self._refused(letter, attempt, form, err.str(), err.code())

        try:
            self._producer.produce(
                self.topic,
                key=None if "key" in form else record.key,
                value=None if "value" in form else record.value,
                headers=dead_letter_headers(record, letter.error, form, letter.rules_version),
                # the event's time, for redrive (0: the producer's)
                timestamp=0 if "time" in form else record.timestamp_ms or 0,
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:  # local queue full, or producer refused
            self.pending -= 1
            code = exc.args[0].code() if isinstance(exc, KafkaException) and exc.args else None
            self._refused(letter, attempt, form, str(exc), code)
        except Exception as exc:  # the client could not take this content (a type, an encoding)
            self.pending -= 1
            self._refused(letter, attempt, form, f"{type(exc).__name__}: {exc}", _CONTENT)

    def _refused(self, letter: Letter, attempt: int, form: Form, reason: str, code: int | None) -> None:
        """Try a smaller form at once when the content was refused; else the same later."""
        record, smaller = letter.record, _smaller(form, code)
        if smaller is not None:
            where = {"source_topic": record.topic, "partition": record.partition, "offset": record.offset}
            if "value" in smaller - form:
                size = len(record.value or b"")
                log.warning("dead_letter_value_omitted", **where, bytes=size, error=reason)
            else:
                omitted = " and ".join(sorted(smaller - form))
                log.warning("dead_letter_reduced", **where, omitted=omitted, error=reason)
            self._write(letter, attempt, smaller)
            return
        if self.failing_since is None:  # unavailable, or refused even at its smallest
            self.failing_since = time.monotonic()
        self.last_failure = reason
        self.on_failure()
        # Every waiting dead letter fails the same way while the topic is unwritable:
        # one line per reason per 10 s, with how many were held back.
        repeated = self._failures.allow(reason)
        if repeated is not None:
            log.error(
                "dead_letter_write_failed",
                topic=self.topic,
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                attempt=attempt,
                error=reason,
                **({"repeated": repeated} if repeated else {}),
            )
        asyncio.get_running_loop().call_later(self._retry_delay, self._write, letter, attempt + 1, form)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))
