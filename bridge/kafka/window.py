"""A replay window: which offsets of which partitions of one topic to read.

``start`` is the first offset read, ``end`` the first offset not read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from bridge.kafka.consumer import built, consumer_config, record_from_message
from bridge.kafka.deadletter import original_of
from bridge.logs import kafka_logger
from bridge.model import Record, TopicPartitionKey


@dataclass(frozen=True)
class Window:
    topic: str
    group: str  # the consumer group replay reads as: never the live one
    commits: bool  # record progress in ``group`` (``--group``), so a rerun resumes
    bounds: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition → (start, end)
    redrive: bool = False  # the topic holds dead letters: map each as its original record
    # redrive only the dead letters whose x-bridge-* header has one of these values
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def selects(self, record: Record) -> bool:
        """Whether the filters take this dead letter (always, without filters)."""
        if not self.filters:
            return True
        headers = record.header_texts()
        return all(headers.get(name) in wanted for name, wanted in self.filters.items())

    def origin(self, record: Record) -> Record:
        """What the rules see: the record, or for redrive the original it was dead-lettered from."""
        return original_of(record) if self.redrive else record

    def described(self) -> dict[str, Any]:
        """The window, as audit entries name it: the run, the topic it reads, its offsets."""
        partitions = {str(p): [start, end] for p, (start, end) in sorted(self.bounds.items())}
        return {"run": "redrive" if self.redrive else "replay", "topic": self.topic, "offsets": partitions}

    @property
    def total(self) -> int:
        return sum(max(0, end - start) for start, end in self.bounds.values())

    def assignment(self) -> list[TopicPartition]:
        return [
            TopicPartition(self.topic, p, start)
            for p, (start, end) in sorted(self.bounds.items())
            if start < end
        ]

    def wants(self, key: TopicPartitionKey, offset: int) -> bool:
        bound = self.bounds.get(key[1])
        return bound is not None and key[0] == self.topic and bound[0] <= offset < bound[1]

    def finished(self, key: TopicPartitionKey, last_read: int) -> bool:
        bound = self.bounds.get(key[1])
        return bound is None or last_read + 1 >= bound[1]


def read_window(consumer: Any, window: Window, until: float | None = None) -> Iterator[Record]:
    """Every record of the window, each partition in order, from a consumer assigned to
    it (:meth:`Window.assignment`); it ends once every partition reached its bound or the
    end of what a consumer can be delivered (or at ``until``, a ``time.monotonic()``
    deadline).

    The partition's end (EOF) counts as its bound: a topic written by a transactional
    producer ends in a commit marker that takes an offset but is never delivered, and
    with ``isolation.level: read_committed`` (librdkafka's default) nothing past an open
    transaction is, so ``end`` (the high watermark) may never be read."""
    remaining = {p for p, (start, end) in window.bounds.items() if start < end}
    while remaining and (until is None or time.monotonic() < until):
        for message in consumer.consume(500, 1.0):
            if (error := message.error()) is not None:
                if error.code() == KafkaError._PARTITION_EOF and message.topic() == window.topic:
                    remaining.discard(message.partition())
                continue
            if message.partition() not in remaining:
                continue
            record = record_from_message(message)
            if not window.wants(record.tp, record.offset):
                remaining.discard(record.partition)
                continue
            yield record
            if window.finished(record.tp, record.offset):
                remaining.discard(record.partition)


def window_reader(kafka: dict[str, Any], group: str, factory: Callable[..., Any] = Consumer) -> Any:
    """A consumer of its own for reading a window (``replay``, ``redrive``, ``diff``): the
    ``kafka`` properties with ``group`` (never the live one), librdkafka's lines in ours."""
    return built(factory, {**consumer_config(kafka), "group.id": group, "logger": kafka_logger()})
