"""The ports the runtime depends on: what it asks of the Kafka source, of the sender to
Intilery, of the dead-letter sink and of the decoder. The real parts
(:class:`~bridge.kafka.source.Source`, :class:`~bridge.intilery.sending.Sender`,
:class:`~bridge.kafka.deadletter.DeadLetters`, :class:`~bridge.decode.decoder.Decoder`)
fit them, and so do the fakes of ``tests/recordpath.py``, with no ``type: ignore``.

What the runtime only reads is a property here, so a plain attribute fits it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from bridge.convert import RecordDecoder as RecordDecoder  # the parts' port, defined with the mapping
from bridge.errors import RecordError
from bridge.intilery.client import Delivered
from bridge.intilery.sending import Gate
from bridge.kafka.deadletter import FailureContext
from bridge.model import Command, Fetched, Position, Record, TopicPartitionKey, Withheld
from bridge.tracing import Span


class RecordSource(Protocol):
    """The consumer, as :class:`~bridge.runtime.worker.KafkaWorker` calls it (on the Kafka
    thread) and the loop reads its fields."""

    @property
    def member(self) -> bool: ...  # the group knows this member (maybe with no partitions)

    @property
    def last_error(self) -> str | None: ...

    @property
    def fatal(self) -> str | None: ...

    @property
    def paused(self) -> bool: ...

    @property
    def rebalances(self) -> int: ...

    @property
    def partitions_total(self) -> int | None: ...

    def start(self) -> None: ...

    def fetch(self, max_records: int, /) -> Fetched: ...

    def pause(self, paused: bool, /) -> None: ...

    def lag(
        self, last_read: dict[TopicPartitionKey, tuple[int, int | None]], /
    ) -> list[tuple[TopicPartitionKey, int, float]]: ...

    def commit(self, positions: Iterable[Position], wait: bool, rebalances: int | None = None) -> bool: ...

    def close(self) -> None: ...


class CommandSender(Protocol):
    """Sends one command until Intilery takes it (or refuses it for good)."""

    @property
    def gate(self) -> Gate: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def failing_since(self) -> float | None: ...

    async def send(
        self, command: Command, context: Mapping[str, Any], span: Span | None, /
    ) -> Delivered | Withheld: ...


class OwnTopicSink(Protocol):
    """A writer of the bridge's own records (dead letters, audit entries): each acknowledged
    before its record is finished, retried while refused."""

    @property
    def what(self) -> str: ...  # "the dead-letter topic", for /readyz

    @property
    def pending(self) -> int: ...

    @property
    def fatal(self) -> str | None: ...

    @property
    def failing_since(self) -> float | None: ...

    @property
    def last_failure(self) -> str | None: ...

    def poll(self) -> object: ...

    def flush(self, timeout: float, /) -> object: ...


class DeadLetterSink(OwnTopicSink, Protocol):
    """Writes a record that failed for good, with its reason, and says when it is written."""

    def send(
        self, record: Record, error: RecordError, on_done: Callable[[], None], known: FailureContext, /
    ) -> None: ...


class AuditSink(OwnTopicSink, Protocol):
    """Writes an audit entry of a command Intilery accepted, and says when it is written."""

    def send(
        self, fields: dict[str, Any], body: dict[str, Any] | None, on_done: Callable[[], None], /
    ) -> None: ...
