"""The Kafka consumer: poll without blocking, pause/resume, rebalance.

Takes the ``kafka`` section (librdkafka properties, passed through) and the
topics; gives :class:`Record` batches. Offsets are never committed
automatically: the pipeline commits what :mod:`bridge.kafka.offsets` says is safe.
Broker errors are logged here and kept apart from record errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.errors import TimeLookupFailed
from bridge.kafka.consumer import (
    built,
    committed_offsets,
    finished_map,
    partition_lag,
    partition_total,
    record_from_message,
)
from bridge.kafka.positions import (
    ResetWatch,
    commit_start_positions,
    count_lost,
    reset_policy,
    start_positions,
    with_start_positions,
)
from bridge.logs import Repeats, kafka_logger
from bridge.model import Position, Record, TopicPartitionKey

log = structlog.get_logger("bridge.kafka.source")


class SourceListener:
    """What the :class:`Source` tells its owner; every method is called on the thread
    that calls :meth:`Source.fetch` (librdkafka serves its callbacks there)."""

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        """Partitions assigned, each with the offsets its last commit named finished;
        ``starts``: those the group never committed, at the offset they start from."""

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> None:
        """Partitions taken away; ``lost``: without the chance to commit."""

    def committed(self, positions: list[Position]) -> None:
        """The broker acknowledged a commit of these partitions."""

    def commit_failed(self, key: TopicPartitionKey | None) -> None:
        """A commit failed for one partition (``None``: for all it carried)."""

    def map_too_large(self, refused_bytes: int | None) -> None:
        """The broker refused a commit because its metadata (the map, of ``refused_bytes``
        at most, when known) is too large."""

    def partitions_counted(self) -> None:
        """:attr:`Source.partitions_total` was counted again (after an assignment)."""

    def lost_to_retention(self, key: TopicPartitionKey, records: int) -> None:
        """librdkafka moved a partition past ``records`` records it never read: the offset
        it was at no longer exists (deleted by retention)."""


class Source:
    """A subscribed consumer; call :meth:`fetch` often, it never blocks."""

    def __init__(
        self,
        conf: dict[str, Any],
        topics: list[str],
        listener: SourceListener,
        factory: Callable[[dict[str, Any]], Any] = Consumer,
        start_at_ms: int | None = None,
        assignment: list[TopicPartition] | None = None,
        count_partitions: bool = False,
    ) -> None:
        """``start_at_ms``: where a partition with no committed offset starts (a time).
        ``assignment``: read exactly these partitions from these offsets (replay), never
        joining the group. ``count_partitions``: keep :attr:`partitions_total` (all the
        partitions of the topics) counted after each assignment of the group."""
        self._start_at_ms = start_at_ms
        self._assignment = assignment
        self._listener = listener
        self._policy = reset_policy(conf)
        self._resets = ResetWatch(kafka_logger())
        callbacks = {"on_commit": self._committed, "error_cb": self._error, "logger": self._resets}
        self._consumer = built(factory, {**conf, **callbacks})
        cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        self._incremental = cooperative or conf.get("group.protocol") == "consumer"
        self._topics, self.at_end = topics, set[TopicPartitionKey]()
        self.last_read: dict[TopicPartitionKey, tuple[int, int | None]] = {}
        self.assigned: set[TopicPartitionKey] = set()
        self.member = False  # an assignment (maybe empty) was received: the group knows us
        self.rebalances = 0  # assignments and revocations so far
        self.partitions_total: int | None = None  # of the subscribed topics, as of the last assignment
        self._count_partitions = count_partitions and assignment is None
        self._recount = self.paused = False
        self.fatal: str | None = None
        self.last_error: str | None = None  # the client's last error since the last assignment
        self._repeats = Repeats()  # a broker down repeats the same error many times a second
        self._commit_repeats = Repeats()

    def start(self) -> None:
        if self._assignment is not None:
            self._assigned(self._consumer, self._assignment)
            return
        self._consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def fetch(self, max_records: int) -> list[Record]:
        records = []
        for message in self._consumer.consume(num_messages=max_records, timeout=0):
            error = message.error()
            key = (message.topic(), message.partition())
            if error is None:
                self.at_end.discard(key)
                record = record_from_message(message)
                self.last_read[key] = (record.offset, record.timestamp_ms)
                records.append(record)
            elif error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(key)
            else:
                self._error(error)
        if self._resets.resets:
            count_lost(self._consumer, self._resets, self.assigned, self._listener.lost_to_retention)
        if self._recount:  # not inside the callback: see _assigned
            self._recount = False
            self.partitions_total = partition_total(self._consumer, self._topics) or self.partitions_total
            self._listener.partitions_counted()
        return records

    def pause(self, paused: bool) -> None:
        """Pause (or resume) every assigned partition; the consumer keeps polling.

        The state is also applied to partitions assigned later.
        """
        if paused != self.paused and self.assigned:
            partitions = [TopicPartition(t, p) for t, p in self.assigned]
            (self._consumer.pause if paused else self._consumer.resume)(partitions)
            log.info("consumer_paused" if paused else "consumer_resumed", partitions=len(partitions))
        self.paused = paused

    def lag(self) -> list[tuple[TopicPartitionKey, int, float]]:
        """Per assigned partition: records and seconds behind (see :func:`partition_lag`)."""
        return partition_lag(self._consumer, sorted(self.assigned), self.last_read)

    def commit(self, positions: Iterable[Position], wait: bool, rebalances: int | None = None) -> bool:
        """Commit these positions, for the partitions still assigned. ``rebalances``: the
        count when they were taken; a commit taken before a rebalance that reaches here
        after it is dropped (the partition may be another member's, or assigned again and
        committed further on revocation). False when a synchronous commit was refused."""
        if rebalances is not None and rebalances != self.rebalances:
            return True
        offsets = [
            TopicPartition(p.topic, p.partition, p.offset, metadata=p.metadata)
            for p in positions
            if (p.topic, p.partition) in self.assigned
        ]
        if not offsets:
            return True
        log.debug("offsets_commit", offsets={f"{tp.topic}[{tp.partition}]": tp.offset for tp in offsets})
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=not wait)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            self._commit_failed(str(error or exc))
            self._listener.commit_failed(None)
            if isinstance(error, KafkaError) and error.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                self._listener.map_too_large(max(len(tp.metadata or "") for tp in offsets))
            return False
        if wait and result:
            self._committed(None, result)
            return all(tp.error is None for tp in result)
        return True

    def close(self) -> None:
        self._consumer.close()

    # --- librdkafka callbacks (served inside consume(), on this thread) ---

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.member, self.last_error = True, None  # even with nothing assigned: a standby member
        self.rebalances += 1
        self.assigned.update(keys)
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in keys])
        committed = committed_offsets(consumer, partitions)
        # Counted once consume() returns: list_topics() inside a callback ends the Python
        # client's call state of the consume() serving it, and its next callback (a log
        # line, a second rebalance) aborts the process (CallState_get: cs != NULL).
        self._recount = self._count_partitions
        starts: list[TopicPartition] = []
        if committed is None:
            if self._start_at_ms is not None:  # which partitions are new is unknown: do not guess
                self.fatal = "source.start_from: the group's committed offsets could not be read"
                partitions = []
        elif self._assignment is None:
            try:
                starts = start_positions(consumer, partitions, committed, self._policy, self._start_at_ms)
            except TimeLookupFailed as exc:
                self.fatal, partitions = f"source.start_from: {exc}", []
            partitions = with_start_positions(partitions, starts)
        finished = {key: finished_map(tp) for key, tp in (committed or {}).items()}
        self._listener.assigned(keys, finished, {(tp.topic, tp.partition): tp.offset for tp in starts})
        # Assign now rather than after this callback, so the pause state can be applied:
        # librdkafka remembers a partition's pause across revocation and reassignment.
        (consumer.incremental_assign if self._incremental else consumer.assign)(partitions)
        (consumer.pause if self.paused else consumer.resume)(partitions)
        if starts and (refused := commit_start_positions(consumer, starts)):
            self._commit_failed(refused)

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._release(partitions, lost=False)

    def _lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.member = False  # until the group assigns again
        self._release(partitions, lost=True)

    def _release(self, partitions: list[TopicPartition], lost: bool) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.rebalances += 1
        self._listener.revoked(keys, lost)  # the last commit for them, unless lost
        log.info(
            "partitions_lost" if lost else "partitions_revoked", partitions=[f"{t}[{p}]" for t, p in keys]
        )
        self.assigned.difference_update(keys)
        self.at_end.difference_update(keys)
        for key in keys:
            self.last_read.pop(key, None)

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            self._commit_failed(error.str())
            self._listener.commit_failed(None)
        too_large, taken = [], []
        for tp in partitions:
            if tp.error is None and tp.offset >= 0:
                taken.append(Position(tp.topic, tp.partition, tp.offset))
            elif tp.error is not None:
                self._commit_failed(tp.error.str(), topic=tp.topic, partition=tp.partition)
                self._listener.commit_failed((tp.topic, tp.partition))
                if tp.error.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                    too_large.append(len(tp.metadata or ""))
        if taken:  # once per commit: each call wakes the event loop
            self._listener.committed(taken)
        if too_large:  # once per commit: the bound follows the smallest map refused
            self._listener.map_too_large(min(too_large) or None)

    def _commit_failed(self, error: str, **where: Any) -> None:
        """Logged once per error per 10 s: while the group coordinator moves, every
        commit fails the same way for seconds (the next commit carries the offsets)."""
        if (repeated := self._commit_repeats.allow(error)) is not None:
            log.warning("commit_failed", error=error, **where, **({"repeated": repeated} if repeated else {}))

    def _error(self, error: KafkaError) -> None:
        self.last_error = error.str()
        if error.fatal():
            self.fatal = error.str()
            log.error("kafka_fatal_error", error=error.str())
        elif (repeated := self._repeats.allow(error.str())) is not None:
            extra = {"repeated": repeated} if repeated else {}
            log.warning("kafka_error", error=error.str(), retried=True, **extra)  # whatever .retriable() says
