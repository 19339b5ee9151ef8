"""A replay window: which offsets of which partitions of one topic to read.

``start`` is the first offset read, ``end`` the first offset not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from .offsets import TopicPartitionKey


@dataclass(frozen=True)
class Window:
    topic: str
    group: str  # the consumer group replay reads as: never the live one
    commits: bool  # record progress in ``group`` (``--group``), so a rerun resumes
    bounds: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition → (start, end)

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
