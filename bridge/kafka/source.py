"""The Kafka consumer: poll without blocking, pause/resume, rebalance.

Takes the ``kafka`` section (librdkafka properties, passed through) and the
topics; gives batches of records (:class:`Fetched`). Offsets are never committed
automatically: the pipeline commits what :mod:`bridge.kafka.offsets` says is safe.
Broker errors are logged here and kept apart from record errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from bridge.kafka.commits import Commits
from bridge.kafka.consumer import (
    built,
    committed_map,
    committed_offsets,
    partition_lag,
    partition_total,
    record_from_message,
)
from bridge.kafka.listener import SourceListener
from bridge.kafka.positions import (
    ResetWatch,
    commit_start_positions,
    count_lost,
    reset_policy,
    where_to_start,
)
from bridge.kafka.sentlog import SentLog
from bridge.logs import Repeats, kafka_logger
from bridge.model import Fetched, Position, TopicPartitionKey

log = structlog.get_logger("bridge.kafka.source")


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
        sent_log: SentLog | None = None,
    ) -> None:
        """``start_at_ms``: where a partition with no committed offset starts (a time).
        ``assignment``: read exactly these partitions from these offsets (replay), never
        joining the group. ``count_partitions``: keep :attr:`partitions_total` (all the
        partitions of the topics) counted after each assignment of the group.
        ``sent_log``: looks up what the partitions' previous owners sent after their last commits."""
        self._start_at_ms = start_at_ms
        self._assignment = assignment
        self._listener = listener
        self._policy, self._resets = reset_policy(conf), ResetWatch(kafka_logger())
        self._commits = Commits(listener)
        callbacks = {"on_commit": self._commits.answered, "error_cb": self._error, "logger": self._resets}
        self._consumer = built(factory, {**conf, **callbacks})
        cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        self._incremental = cooperative or conf.get("group.protocol") == "consumer"
        self._topics, self._sent_log = topics, sent_log or SentLog.off()
        self.assigned: set[TopicPartitionKey] = set()
        self._looking_up: set[TopicPartitionKey] = set()  # paused until the audit look-up is done
        self.member = False  # an assignment (maybe empty) was received: the group knows us
        self.rebalances = 0  # assignments and revocations so far
        self.partitions_total: int | None = None  # of the subscribed topics, as of the last assignment
        self._count_partitions = count_partitions and assignment is None
        self._recount = self.paused = False
        self.fatal: str | None = None
        self.last_error: str | None = None  # the client's last error since the last assignment
        self._repeats = Repeats()  # a broker down repeats the same error many times a second

    def start(self) -> None:
        if self._assignment is not None:
            self._assigned(self._consumer, self._assignment)
            return
        self._consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def fetch(self, max_records: int) -> Fetched:
        records, ends = [], {}
        for message in self._consumer.consume(num_messages=max_records, timeout=0):
            error = message.error()
            if error is None:
                records.append(record := record_from_message(message))
                ends[record.tp] = False
            elif error.code() == KafkaError._PARTITION_EOF:
                ends[message.topic(), message.partition()] = True
            else:
                self._error(error)
        if self._resets.resets:
            count_lost(self._consumer, self._resets, self.assigned, self._listener.lost_to_retention)
        if self._recount:  # not inside the callback: see _assigned
            self._recount = False
            self.partitions_total = partition_total(self._consumer, self._topics) or self.partitions_total
            self._listener.partitions_counted()
        if (found := self._sent_log.looked_up()) is not None:
            self._listener.sent_earlier(found)  # before any of their records: they were paused
            self._looking_up.difference_update(found)
            if not self.paused:
                self._consumer.resume([TopicPartition(t, p) for t, p in found])
        return Fetched(records, ends)

    def pause(self, paused: bool) -> None:
        """Pause (or resume) every assigned partition; the consumer keeps polling.

        The state is also applied to partitions assigned later.
        """
        waiting = self._looking_up if not paused else set()  # resumed once looked up
        if paused != self.paused and (keys := self.assigned - waiting):
            partitions = [TopicPartition(t, p) for t, p in keys]
            (self._consumer.pause if paused else self._consumer.resume)(partitions)
            log.info("consumer_paused" if paused else "consumer_resumed", partitions=len(partitions))
        self.paused = paused

    def lag(
        self, last_read: dict[TopicPartitionKey, tuple[int, int | None]]
    ) -> list[tuple[TopicPartitionKey, int, float]]:
        """Per partition of ``last_read`` (its last record read): records, seconds behind."""
        return partition_lag(self._consumer, sorted(last_read), last_read)

    def commit(self, positions: Iterable[Position], wait: bool, rebalances: int | None = None) -> bool:
        """Commit these positions, for the partitions still assigned (False: a synchronous
        commit refused). ``rebalances``: the count when they were taken; taken before a
        rebalance (a partition may be another member's, or committed further on revocation),
        they are dropped and told as not committed: the next commit carries them again."""
        if rebalances is not None and rebalances != self.rebalances:
            self._listener.not_committed(None)
            return True
        return self._commits.request(self._consumer, [p for p in positions if p.tp in self.assigned], wait)

    def close(self) -> None:
        self._consumer.close()

    # --- librdkafka callbacks (served inside consume(), on this thread) ---

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.member, self.last_error = True, None  # even with nothing assigned: a standby member
        self.rebalances += 1
        self.assigned.update(keys)
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in keys])
        # Counted once consume() returns: list_topics() inside a callback ends the Python
        # client's call state of the consume() serving it, and its next callback (a log
        # line, a second rebalance) aborts the process (CallState_get: cs != NULL).
        self._recount = self._count_partitions
        positioned, starts = self._where_to_start(consumer, partitions)
        self._assign(consumer, positioned)
        if starts and (refused := commit_start_positions(consumer, starts)):
            self._commits.log_refusal(refused)

    def _where_to_start(
        self, consumer: Any, partitions: list[TopicPartition]
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """The partitions at the offsets they start from, and those of them the group never
        committed (to commit at once); the listener told what each last commit named
        finished, the audit look-up told which may have had commands sent since."""
        committed = committed_offsets(consumer, partitions)
        following = self._assignment is None
        positioned, starts, fatal = where_to_start(
            consumer, partitions, committed, self._policy, self._start_at_ms, following
        )
        self.fatal = fatal or self.fatal
        maps = {key: (tp.offset, committed_map(tp)) for key, tp in (committed or {}).items()}
        finished = {key: found.finished for key, (_, found) in maps.items()}
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._listener.assigned(keys, finished, {(tp.topic, tp.partition): tp.offset for tp in starts})
        # Looked up on a thread of its own, started in fetch() (not inside the callback: see
        # _assigned); their records wait for it, paused.
        self._looking_up |= self._sent_log.assigned(maps)
        return positioned, starts

    def _assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Assign now rather than after the callback, so the pause state can be applied:
        librdkafka remembers a partition's pause across revocation and reassignment. Those
        being looked up wait, paused, whatever the state."""
        (consumer.incremental_assign if self._incremental else consumer.assign)(partitions)
        waiting = [tp for tp in partitions if (tp.topic, tp.partition) in self._looking_up]
        running = [tp for tp in partitions if (tp.topic, tp.partition) not in self._looking_up]
        consumer.pause(waiting)
        (consumer.pause if self.paused else consumer.resume)(running)

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._release(partitions, lost=False)

    def _lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.member = False  # until the group assigns again
        self._release(partitions, lost=True)

    def _release(self, partitions: list[TopicPartition], lost: bool) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.rebalances += 1
        last = self._listener.revoked(keys, lost)  # the last commit for them, unless lost
        if last and not lost:
            self.commit(last, wait=True)
        self._listener.released(keys)
        self._sent_log.revoked(keys)
        self._looking_up.difference_update(keys)
        log.info(
            "partitions_lost" if lost else "partitions_revoked", partitions=[f"{t}[{p}]" for t, p in keys]
        )
        self.assigned.difference_update(keys)

    def _error(self, error: KafkaError) -> None:
        self.last_error = error.str()
        if error.fatal():
            self.fatal = error.str()
            log.error("kafka_fatal_error", error=error.str())
        elif (repeated := self._repeats.allow(error.str())) is not None:
            extra = {"repeated": repeated} if repeated else {}
            log.warning("kafka_error", error=error.str(), retried=True, **extra)  # whatever .retriable() says
