"""What the consumer tells, carried from the Kafka thread to the event loop through one
queue.

librdkafka serves its callbacks on the Kafka thread, inside the consumer's calls
(:mod:`bridge.runtime.worker`). :class:`KafkaEvents` is the consumer's listener: each
callback becomes an event on a queue that the loop drains (:meth:`KafkaEvents.serving`),
handing it to the partitions' hand-over or to the checkpoint. Assignments, the audit
look-up's findings and revocations are *asked*: the Kafka thread waits for the loop's
answer (so a partition's records are tracked before they are handled, and a revocation
lets the commands on the wire finish, while the loop keeps delivering them, before its
last commit); commit answers and counts are only *told*. Nothing on the Kafka thread
touches the loop's state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from bridge.kafka.listener import SourceListener
from bridge.kafka.sentlog import SentEarlier
from bridge.model import Position, TopicPartitionKey
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.partitions import Partitions

log = structlog.get_logger("bridge")


@dataclass(frozen=True)
class Assigned:
    keys: list[TopicPartitionKey]
    finished: dict[TopicPartitionKey, set[int]]  # what each one's last commit named finished
    starts: dict[TopicPartitionKey, int] | None  # those the group never committed


@dataclass(frozen=True)
class FoundSentEarlier:
    found: dict[TopicPartitionKey, SentEarlier]


@dataclass(frozen=True)
class Revoked:
    keys: set[TopicPartitionKey]
    lost: bool


@dataclass(frozen=True)
class Released:
    keys: set[TopicPartitionKey]


@dataclass(frozen=True)
class Committed:
    positions: list[Position]


@dataclass(frozen=True)
class NotCommitted:
    key: TopicPartitionKey | None  # None: for every partition it carried


@dataclass(frozen=True)
class MapTooLarge:
    refused_bytes: int | None


@dataclass(frozen=True)
class PartitionsCounted:
    pass


@dataclass(frozen=True)
class LostToRetention:
    key: TopicPartitionKey
    records: int


Event = (
    Assigned
    | FoundSentEarlier
    | Revoked
    | Released
    | Committed
    | NotCommitted
    | MapTooLarge
    | PartitionsCounted
    | LostToRetention
)


@dataclass(frozen=True)
class Queued:
    """An event on the queue, with the future the Kafka thread waits on when it asked."""

    event: Event
    answer: concurrent.futures.Future[Any] | None = field(default=None)


class KafkaEvents(SourceListener):
    """The consumer's listener (see the module): bound to the loop by :meth:`serving`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Queued] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # --- on the Kafka thread ---

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        self._ask(Assigned(keys, finished, starts))

    def sent_earlier(self, found: dict[TopicPartitionKey, SentEarlier]) -> None:
        self._ask(FoundSentEarlier(found))

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> list[Position]:
        positions: list[Position] = self._ask(Revoked(set(keys), lost))
        return positions

    def released(self, keys: list[TopicPartitionKey]) -> None:
        self._ask(Released(set(keys)))

    def committed(self, positions: list[Position]) -> None:
        self._tell(Committed(positions))

    def not_committed(self, key: TopicPartitionKey | None) -> None:
        self._tell(NotCommitted(key))

    def map_too_large(self, refused_bytes: int | None) -> None:
        self._tell(MapTooLarge(refused_bytes))

    def partitions_counted(self) -> None:
        self._tell(PartitionsCounted())

    def lost_to_retention(self, key: TopicPartitionKey, records: int) -> None:
        self._tell(LostToRetention(key, records))

    def _ask(self, event: Event) -> Any:
        """Put ``event`` on the queue and wait for the loop's answer."""
        assert threading.get_ident() != self._loop_thread, "the loop would wait for itself"
        answer: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(Queued(event, answer))
        return answer.result()

    def _tell(self, event: Event) -> None:
        self._put(Queued(event))

    def _put(self, queued: Queued) -> None:
        assert self._loop is not None and self._queue is not None, "serving() first"
        self._loop.call_soon_threadsafe(self._queue.put_nowait, queued)

    # --- on the loop ---

    def serving(self, partitions: Partitions, checkpoint: Checkpoint) -> asyncio.Task[None]:
        """Drain the queue, each event to its handler, until the task is cancelled: begun
        before the consumer starts (the queue takes events from now on) and cancelled once
        it is closed (closing it revokes)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._queue = asyncio.Queue()
        return asyncio.create_task(self._serve(self._queue, partitions, checkpoint))

    async def _serve(
        self, queue: asyncio.Queue[Queued], partitions: Partitions, checkpoint: Checkpoint
    ) -> None:
        while True:
            queued = await queue.get()
            try:
                result = await _handled(queued.event, partitions, checkpoint)
            except Exception as exc:
                if queued.answer is not None:
                    queued.answer.set_exception(exc)  # raised on the Kafka thread, where it asked
                else:  # a bug: the next event is still served, or an ask would wait for ever
                    log.exception("kafka_event_failed", event=type(queued.event).__name__)
            else:
                if queued.answer is not None:
                    queued.answer.set_result(result)


async def _handled(event: Event, partitions: Partitions, checkpoint: Checkpoint) -> Any:
    """What the loop does with ``event``, and its answer to the Kafka thread."""
    match event:
        case Assigned(keys, finished, starts):
            partitions.assigned(keys, finished, starts)
        case FoundSentEarlier(found):
            partitions.sent_earlier(found)
        case Revoked(keys, lost):
            return [] if lost else await partitions.finish_revoked(keys)
        case Released(keys):
            partitions.forget(keys)
        case Committed(positions):
            checkpoint.acknowledged(positions)
        case NotCommitted(key):
            checkpoint.not_committed(key)
        case MapTooLarge(refused_bytes):
            checkpoint.map_refused(refused_bytes)
        case PartitionsCounted():
            partitions.share_rate()
        case LostToRetention(key, records):
            partitions.count_lost(key, records)
    return None
