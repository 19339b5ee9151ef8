"""The dead-letter producer for records that can never be delivered.

Takes a :class:`~bridge.kafka.source.Record` and the :class:`~bridge.errors.RecordError`
that condemned it; writes the record to the dead-letter topic with its key,
value and headers unchanged plus ``x-bridge-*`` headers, and calls ``on_done``
only once the broker has acknowledged the write. A failed write is retried
every second (``retry_delay_s``), forever, and logged once per reason per 10 s:
the record's offset stays uncommitted until the write succeeds. A record too large for the dead-letter
topic is written without its value, with an ``x-bridge-value-omitted`` header
(the source headers say where the original is, for ``replay``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.errors import RecordError
from bridge.logs import Repeats, kafka_logger, redact
from bridge.model import Record

log = structlog.get_logger("bridge.kafka.deadletter")

VALUE_OMITTED = "x-bridge-value-omitted"

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


def dead_letter_headers(
    record: Record, error: RecordError, omitted: int | None = None
) -> list[tuple[str, bytes | None]]:
    extra = {
        "x-bridge-source-topic": record.topic,
        "x-bridge-source-partition": str(record.partition),
        "x-bridge-source-offset": str(record.offset),
        "x-bridge-error-class": error.error_class,
        "x-bridge-error-reason": redact(error.reason),
    }
    if error.rule:
        extra["x-bridge-rule"] = error.rule
    if error.status is not None:
        extra["x-bridge-http-status"] = str(error.status)
    if omitted is not None:
        extra[VALUE_OMITTED] = f"{omitted} bytes"
    return [*record.headers, *((k, v.encode()) for k, v in extra.items())]


class DeadLetters:
    def __init__(self, topic: str, producer: Any, retry_delay_s: float = 1.0) -> None:
        self.topic = topic
        self._producer = producer
        self._retry_delay = retry_delay_s
        self.pending = 0
        self.fatal: str | None = None
        self._repeats = Repeats()
        self._failures = Repeats()

    @classmethod
    def create(cls, topic: str, kafka: dict[str, Any]) -> DeadLetters:
        dead_letters = cls(topic, None)
        callbacks = {"error_cb": dead_letters._error, "logger": kafka_logger()}
        dead_letters._producer = Producer({**producer_config(kafka), **callbacks})
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
        attempt: int = 1,
        omitted: int | None = None,
    ) -> None:
        self.pending += 1

        def delivered(err: KafkaError | None, _message: Any) -> None:
            self.pending -= 1
            if err is None:
                on_done()
                return
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and record.value:
                self._without_value(record, error, on_done, attempt)
                return
            self._retry_later(record, error, on_done, attempt, err.str())

        try:
            self._producer.produce(
                self.topic,
                key=record.key,
                value=record.value,
                headers=dead_letter_headers(record, error, omitted),
                timestamp=record.timestamp_ms or 0,  # keep the event's time for redrive
                on_delivery=delivered,
            )
        except Exception as exc:  # local queue full (BufferError) or producer refused: retry later
            self.pending -= 1
            too_large = (
                isinstance(exc, KafkaException) and exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
            )
            if too_large and record.value:
                self._without_value(record, error, on_done, attempt)
                return
            self._retry_later(record, error, on_done, attempt, str(exc))

    def _retry_later(
        self, record: Record, error: RecordError, on_done: Callable[[], None], attempt: int, reason: str
    ) -> None:
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
        asyncio.get_running_loop().call_later(
            self._retry_delay, self.send, record, error, on_done, attempt + 1
        )

    def _without_value(
        self, record: Record, error: RecordError, on_done: Callable[[], None], attempt: int
    ) -> None:
        size = len(record.value or b"")
        log.warning(
            "dead_letter_value_omitted",
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            bytes=size,
        )
        self.send(dataclasses.replace(record, value=None), error, on_done, attempt, omitted=size)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))
