"""Which offsets are safe to commit.

Takes the offsets of fetched records, in fetch order, and their completions in
any order; gives, per partition, the next offset to commit: one past the
highest offset below which every record is finished (delivered,
dead-lettered or skipped). An offset that goes backwards is refused, and a
commit never passes an unfinished record.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

TopicPartitionKey = tuple[str, int]


class PartitionOffsets:
    """The in-order offsets of one partition and which of them are finished."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._finished: set[int] = set()
        self._last_added: int | None = None
        self.next_commit: int | None = None
        self.committed: int | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, offset: int) -> None:
        if not self.accepts(offset):
            raise ValueError(f"offset {offset} is not after {self._last_added}")
        self._last_added = offset
        self._pending.append(offset)

    def accepts(self, offset: int) -> bool:
        """Whether ``offset`` comes after every offset added so far."""
        return self._last_added is None or offset > self._last_added

    def finish(self, offset: int) -> None:
        if not self._pending or offset < self._pending[0]:
            return  # already finished, or from before a seek; nothing to do
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self.next_commit = done + 1

    def to_commit(self) -> int | None:
        """The offset to commit now, or None if nothing new is finished."""
        if self.next_commit is None or (self.committed is not None and self.next_commit <= self.committed):
            return None
        return self.next_commit


@dataclass
class Position:
    topic: str
    partition: int
    offset: int


class OffsetTracker:
    """Per-partition :class:`PartitionOffsets` for the current assignment."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, PartitionOffsets] = {}

    def assign(self, key: TopicPartitionKey) -> PartitionOffsets:
        self._partitions[key] = PartitionOffsets()
        return self._partitions[key]

    def revoke(self, key: TopicPartitionKey) -> PartitionOffsets | None:
        return self._partitions.pop(key, None)

    def get(self, key: TopicPartitionKey) -> PartitionOffsets | None:
        return self._partitions.get(key)

    def unfinished(self) -> int:
        return sum(len(p) for p in self._partitions.values())

    def to_commit(self, keys: set[TopicPartitionKey] | None = None) -> list[Position]:
        return [
            Position(topic, partition, offset)
            for (topic, partition), part in self._partitions.items()
            if (keys is None or (topic, partition) in keys) and (offset := part.to_commit()) is not None
        ]

    def mark_committed(self, position: Position) -> None:
        part = self._partitions.get((position.topic, position.partition))
        if part is not None and (part.committed is None or position.offset > part.committed):
            part.committed = position.offset
