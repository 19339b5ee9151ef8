"""The bridge's own writes to Kafka (dead letters, audit entries): each acknowledged
before its record may be committed, retried while the topic is unavailable, and written
in a smaller form at once when refused for its content; never silently lost.

A subclass says what it writes (:meth:`TopicWriter._message` for an item in a form), how it
gets smaller (:meth:`TopicWriter._smaller`) and what a reduction logs. Only a write refused
for availability (broker down, ACL, queue full) is retried as it is, every second
(``retry_delay_s``), logged once per reason per 10 s; meanwhile
:attr:`TopicWriter.failing_since` says so to readiness and ``on_failure`` counts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.kafka.consumer import built
from bridge.logs import Repeats, kafka_logger

log = structlog.get_logger("bridge.kafka.writer")

Item = TypeVar("Item")
Omitted = frozenset[str]  # what an item is written without
NOTHING_OMITTED: Omitted = frozenset()
CONTENT = -1  # not a Kafka error: the client could not take this content

# Refusals of what was written, not of writing: a smaller form may pass.
CONTENT_ERRORS = frozenset(
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


class TopicWriter(Generic[Item]):
    """Writes items to ``topic``; ``on_done`` once the broker has each."""

    kind = "write"  # names the log lines: ``{kind}_write_failed``, ``{kind}_producer_error``
    what = "the topic"  # in /readyz's reasons

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
    def create(cls, topic: str, kafka: dict[str, Any], **options: Any) -> Self:
        writer = cls(topic, None, **options)
        callbacks = {"error_cb": writer._error, "logger": kafka_logger()}
        writer._producer = built(Producer, {**producer_config(kafka), **callbacks})
        return writer

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = error.str()
        repeated = self._repeats.allow(error.str())
        if error.fatal() or repeated is not None:
            extra = {"repeated": repeated} if repeated else {}
            log.warning(f"{self.kind}_producer_error", error=error.str(), fatal=error.fatal(), **extra)

    # --- what a subclass says --------------------------------------------------------

    def _message(self, item: Item, form: Omitted) -> dict[str, Any]:
        """``produce()``'s key, value, headers and timestamp for ``item`` in ``form``."""
        raise NotImplementedError

    def _smaller(self, form: Omitted, code: int | None) -> Omitted | None:
        """The form to try at once after a refusal with ``code``; None: the same, later."""
        return None

    def _reduced(self, item: Item, form: Omitted, smaller: Omitted, reason: str) -> None:
        """Log that ``item`` is written in ``smaller`` form for ``reason``."""

    def _where(self, item: Item) -> dict[str, Any]:
        """Log fields naming ``item``'s record."""
        return {}

    # --- writing ---------------------------------------------------------------------

    def _write(
        self, item: Item, on_done: Callable[[], None], attempt: int = 1, form: Omitted = NOTHING_OMITTED
    ) -> None:
        self.pending += 1

        def delivered(err: KafkaError | None, _message: Any) -> None:
            self.pending -= 1
            if err is None:
                self.failing_since = None
                on_done()
            else:
                self._refused(item, on_done, attempt, form, err.str(), err.code())

        try:
            self._producer.produce(self.topic, **self._message(item, form), on_delivery=delivered)
        except (BufferError, KafkaException) as exc:  # local queue full, or producer refused
            self.pending -= 1
            code = exc.args[0].code() if isinstance(exc, KafkaException) and exc.args else None
            self._refused(item, on_done, attempt, form, str(exc), code)
        except Exception as exc:  # the client could not take this content (a type, an encoding)
            self.pending -= 1
            self._refused(item, on_done, attempt, form, f"{type(exc).__name__}: {exc}", CONTENT)

    def _refused(
        self,
        item: Item,
        on_done: Callable[[], None],
        attempt: int,
        form: Omitted,
        reason: str,
        code: int | None,
    ) -> None:
        """Try a smaller form at once when the content was refused; else the same later."""
        smaller = self._smaller(form, code)
        if smaller is not None:
            self._reduced(item, form, smaller, reason)
            self._write(item, on_done, attempt, smaller)
            return
        if self.failing_since is None:  # unavailable, or refused even at its smallest
            self.failing_since = time.monotonic()
        self.last_failure = reason
        self.on_failure()
        # Every waiting write fails the same way while the topic is unwritable:
        # one line per reason per 10 s, with how many were held back.
        repeated = self._failures.allow(reason)
        if repeated is not None:
            log.error(
                f"{self.kind}_write_failed",
                topic=self.topic,
                **self._where(item),
                attempt=attempt,
                error=reason,
                **({"repeated": repeated} if repeated else {}),
            )
        asyncio.get_running_loop().call_later(
            self._retry_delay, self._write, item, on_done, attempt + 1, form
        )

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))
