"""Everything the bridge knows about each partition it owns, in one place.

A :class:`PartitionState` is made when its partition is assigned and dropped when it
is revoked (or lost); only the event loop touches it. :class:`Assignment` holds the
states of the current assignment and answers for all of them at once (records and
bytes held, records waiting, partitions stuck, read to their end).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bridge.kafka.offsets import PartitionOffsets
from bridge.kafka.sentlog import SentEarlier
from bridge.kafka.window import Window
from bridge.model import Record, TopicPartitionKey
from bridge.runtime.lanes import Lanes, wait_for


@dataclass(eq=False, slots=True)
class PartitionState:
    """One assigned partition."""

    key: TopicPartitionKey
    _offsets: PartitionOffsets  # the records held, which are finished, where a commit points
    lanes: Lanes = field(default_factory=Lanes)  # one per Kafka key: its commands in order
    last_read: tuple[int, int | None] | None = None  # the last record read: offset, timestamp
    at_end: bool = False  # the last fetch that had news of it reached its end
    releasing: bool = False  # being revoked: nothing new starts for it
    rewound: bool = False  # read again from before the last record read
    halted_at: int | None = None  # a failure (no dead-letter topic) stopped it at this record
    lag: tuple[int, float] = (0, 0.0)  # records and seconds behind, as last measured

    def read(self, record: Record) -> None:
        self.last_read = (record.offset, record.timestamp_ms)

    def read_again(self) -> bool:
        """The consumer went back to a record it had read (an offset reset, or librdkafka
        rewinding a partition after pause and resume): every record up to the last one read
        is tracked already (finished, on the wire or waiting), so it is not sent again; the
        partition goes on once the consumer passes the last one read. True the first time."""
        first, self.rewound = not self.rewound, True
        return first

    def halt(self, offset: int) -> None:
        """Records from ``offset`` on are never sent or finished."""
        self.halted_at = offset if self.halted_at is None else min(offset, self.halted_at)

    def sends(self, offset: int) -> bool:
        """Whether a command of the record at ``offset`` may still start."""
        return not self.releasing and (self.halted_at is None or offset < self.halted_at)

    # --- its offsets: touched here only ---

    def track(self, record: Record, now: float) -> bool:
        """Hold ``record``'s offset until it is finished (``now``: monotonic seconds); False
        when it comes again after a rewind (every record up to the last one read is held
        already)."""
        if not self._offsets.accepts(record.offset):
            return False
        self.rewound = False
        self._offsets.add(record.offset, record.size, now)
        return True

    @property
    def last_added(self) -> int | None:
        return self._offsets.last_added

    def finish_if_earlier(self, offset: int) -> bool:
        """Finish ``offset`` at once when the last commit's map names it finished (an
        earlier run delivered it); whether it did."""
        if not self._offsets.finished_earlier(offset):
            return False
        self._offsets.finish(offset)
        return True

    def finish(self, offset: int) -> None:
        """The record is done with (delivered, skipped, dead-lettered): a commit may pass it."""
        self._offsets.finish(offset)

    def leave(self, offset: int) -> None:
        """Done with for this run without being finished: no commit passes it."""
        self._offsets.leave(offset)

    def sent_earlier(self, offset: int) -> dict[str, str]:
        """The rules whose commands for ``offset`` the audit topic shows sent after the last commit."""
        return self._offsets.sent_earlier(offset)

    def start_at(self, offset: int) -> None:
        """The group never committed here: the next commit carries this start."""
        self._offsets.start_at(offset)

    def inherit(self, sent: SentEarlier) -> None:
        """What the audit topic shows the previous owner sent after its last commit."""
        self._offsets.inherit(sent)

    def to_commit(self, force: bool, limit: int) -> tuple[int, str, int] | None:
        """Where a commit points now, its map and what the map left out (see
        :meth:`PartitionOffsets.to_commit`)."""
        return self._offsets.to_commit(force, limit)

    def acknowledged(self, offset: int) -> None:
        self._offsets.acknowledged(offset)

    def commit_again(self) -> None:
        self._offsets.commit_again()

    def uncommitted(self) -> bool:
        return self._offsets.uncommitted()

    def held(self) -> int:
        """Records held: read and not yet passed by the commit position."""
        return len(self._offsets)

    def read_through(self, window: Window | None) -> bool:
        """Read to its end: the partition's, or the replay window's."""
        if self.at_end or window is None:
            return self.at_end
        return window.finished(self.key, -1 if self.last_read is None else self.last_read[0])


class Assignment:
    """The states of the partitions assigned now."""

    def __init__(self) -> None:
        self._states: dict[TopicPartitionKey, PartitionState] = {}

    def assign(self, key: TopicPartitionKey, finished_earlier: Iterable[int] = ()) -> PartitionState:
        self._states[key] = PartitionState(key, PartitionOffsets(finished_earlier))
        return self._states[key]

    def revoke(self, key: TopicPartitionKey) -> None:
        """Forget it: its lanes are cancelled, its records still unfinished stay uncommitted."""
        if (state := self._states.pop(key, None)) is not None:
            state.lanes.cancel()

    def get(self, key: TopicPartitionKey) -> PartitionState | None:
        return self._states.get(key)

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(list(self._states.values()))

    def states_of(self, keys: set[TopicPartitionKey] | None) -> list[PartitionState]:
        """The states of ``keys`` (None: all of them)."""
        return [state for key, state in self._states.items() if keys is None or key in keys]

    def reached(self, ends: dict[TopicPartitionKey, bool]) -> None:
        """A fetch's news: per partition, whether it ended at the partition's end."""
        for key, at_end in ends.items():
            if (state := self._states.get(key)) is not None:
                state.at_end = at_end

    def held(self) -> int:
        """Records held across partitions: what ``max_buffered_records`` bounds."""
        return sum(state.held() for state in self._states.values())

    def held_bytes(self) -> int:
        """Bytes of the unfinished records: what ``max_buffered_bytes`` bounds."""
        return sum(state._offsets.bytes for state in self._states.values())

    def unfinished(self) -> int:
        return sum(state._offsets.unfinished() for state in self._states.values())

    def lanes(self) -> int:
        """Lanes with work, across partitions."""
        return sum(len(state.lanes) for state in self._states.values())

    async def wait(self, timeout: float, keys: set[TopicPartitionKey] | None = None) -> bool:
        """Wait up to ``timeout`` for the lanes of ``keys`` (None: all) to empty; True if they did."""
        return await wait_for((state.lanes for state in self.states_of(keys)), timeout)

    def cancel(self) -> int:
        """Abandon every lane (their records stay unfinished); gives how many there were."""
        return sum(state.lanes.cancel() for state in self._states.values())

    def read_through(self, window: Window | None) -> bool:
        """Some partition is assigned and every one is read to its end (or the window's)."""
        return bool(self._states) and all(state.read_through(window) for state in self._states.values())

    def last_read(self) -> dict[TopicPartitionKey, tuple[int, int | None]]:
        """Per partition, the last record read (offset -1: none yet)."""
        return {key: state.last_read or (-1, None) for key, state in self._states.items()}

    def waiting(self, now: float) -> dict[TopicPartitionKey, float]:
        """Per partition, seconds its oldest unfinished record has waited (0: none waits)."""
        return {
            key: 0.0 if (since := state._offsets.waiting_since()) is None else now - since
            for key, state in self._states.items()
        }

    def stuck(self, now: float, after_s: float) -> list[TopicPartitionKey]:
        """Partitions whose commit has not moved for ``after_s`` while records wait."""
        return [
            key
            for key, state in self._states.items()
            if (since := state._offsets.waiting_since()) is not None
            and now - max(since, state._offsets.moved_at) > after_s
        ]
