"""Which offsets are safe to commit, and which records after them are finished.

Takes the offsets of fetched records, in fetch order, and their completions in
any order; gives, per partition, the next offset to commit: the first record
not yet finished (delivered, dead-lettered or skipped), with the finished ones
after it named in the commit's metadata (:mod:`bridge.kafka.offsetmap`). An offset
that goes backwards is refused, and a commit never passes an unfinished record.
A partition assigned with a map from its last commit knows those records are
finished before it reads them again, and keeps naming them until it passes them;
so too the commands the audit topic shows were sent after that commit
(:mod:`bridge.kafka.sentlog`). Each commit also says since when the records from
its offset on may have had commands sent (see :mod:`bridge.kafka.offsetmap`).
The commit job itself is :class:`bridge.runtime.checkpoint.Checkpoint`'s.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from bridge.kafka import offsetmap
from bridge.kafka.sentlog import SentEarlier


class PartitionOffsets:
    """The in-order offsets of one partition and which of them are finished."""

    def __init__(self, finished_earlier: Iterable[int] = ()) -> None:
        self._pending: deque[int] = deque()
        self._finished: set[int] = set()  # read and finished, after the first unfinished
        self._earlier = set(finished_earlier)  # named finished by the last commit, not read again yet
        self._sent = SentEarlier(0)  # commands the audit topic shows sent after the last commit
        self._last_added: int | None = None
        self.next_commit: int | None = None
        self.committed: int | None = None  # the last offset the broker acknowledged
        self._changes = 0
        self._carried = 0  # the changes the last commit taken carried
        self._left: set[int] = set()  # done with for now, never finished: commits stop before them
        self._open: dict[int, tuple[int, float]] = {}  # unfinished offsets, in order: (bytes, read at)
        self.bytes = 0  # of the unfinished records
        self.moved_at = time.monotonic()  # when ``committed`` last moved (or the partition came)

    def __len__(self) -> int:
        """Records held: read and not yet passed by the commit position, finished ones
        behind an unfinished one included; records left aside, and finished ones behind
        nothing but those, are not (they hold no work back)."""
        if not self._left:
            return len(self._pending)
        done = self._finished | self._left
        first_open = next((offset for offset in self._pending if offset not in done), None)
        if first_open is None:
            return 0
        return sum(1 for offset in self._pending if offset >= first_open and offset not in self._left)

    def unfinished(self) -> int:
        """Records read and not finished (nor left aside)."""
        return len(self._pending) - len(self._finished) - len(self._left)

    def add(self, offset: int, size: int = 0, now: float = 0.0) -> None:
        """A record read: ``size`` bytes, at ``now`` (monotonic seconds)."""
        if not self.accepts(offset):
            raise ValueError(f"offset {offset} is not after {self._last_added}")
        self._last_added = offset
        self._pending.append(offset)
        self._open[offset] = (size, now)
        self.bytes += size

    def _close(self, offset: int) -> None:
        held = self._open.pop(offset, None)
        if held is not None:
            self.bytes -= held[0]

    def start_at(self, offset: int) -> None:
        """The group's first position here (never committed before): the next commit
        carries it, and the one after a failed commit again, until the broker has it."""
        if self.next_commit is None and not self._pending:
            self.next_commit = offset
            self._changes += 1

    def waiting_since(self) -> float | None:
        """When the oldest unfinished record was read; None when none waits."""
        return next(iter(self._open.values()))[1] if self._open else None

    @property
    def last_added(self) -> int | None:
        return self._last_added

    def accepts(self, offset: int) -> bool:
        """Whether ``offset`` comes after every offset added so far."""
        return self._last_added is None or offset > self._last_added

    def finished_earlier(self, offset: int) -> bool:
        """Whether the last commit's map names ``offset`` as finished (not to be sent again)."""
        return offset in self._earlier

    def leave(self, offset: int) -> None:
        """Done with ``offset`` for this run without finishing it (a dead letter that fails
        again in a redrive): no commit passes it, so the next run reads it again."""
        if self._pending and offset >= self._pending[0]:
            self._close(offset)
            self._left.add(offset)
            self._changes += 1  # worth a commit: the position stops here for good

    def finish(self, offset: int) -> None:
        if not self._pending or offset < self._pending[0]:
            return  # already finished, or from before a seek; nothing to do
        self._earlier.discard(offset)
        self._close(offset)
        self._finished.add(offset)
        self._changes += 1
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self.next_commit = done + 1

    def position(self) -> int | None:
        """Where a commit would point: the first unfinished record read, else one past the
        last finished; None before anything was finished or read."""
        return self._pending[0] if self._pending else self.next_commit

    def to_commit(self, force: bool = False, limit: int = offsetmap.MAX_BYTES) -> tuple[int, str, int] | None:
        """The offset to commit, its map (at most ``limit`` bytes) and how many finished
        offsets the map left out; None when nothing changed since the last call (``force``:
        unless nothing is known)."""
        position = self.position()
        if position is None or (self._carried == self._changes and not force):
            return None
        self._carried = self._changes
        self._earlier = {offset for offset in self._earlier if offset >= position}
        finished = sorted(self._finished | self._earlier)  # all after the position
        metadata, left_out = offsetmap.encode(position, finished, limit, self._since_ms(position, force))
        return position, metadata, left_out

    def _since_ms(self, position: int, final: bool) -> int:
        """Since when commands of the records from ``position`` on may have been sent (epoch
        ms): when the first unfinished one was read; now when none is unfinished; 0 after a
        ``final`` commit (revocation, shutdown) with none unfinished: none will be. Never
        later than the previous owner's, while its sends are still ahead."""
        now = time.time()
        read_at = self.waiting_since()
        if read_at is not None:
            since = int((now - (time.monotonic() - read_at)) * 1000)
        else:
            since = 0 if final else int(now * 1000)
        self._sent = self._sent.from_offset(position)
        if self._sent.commands:
            since = min(since, self._sent.since_ms) if since else self._sent.since_ms
        return since

    def inherit(self, sent: SentEarlier) -> None:
        """The commands the audit topic shows the partition's previous owner sent after its
        last commit: not sent again (or marked resent), and named by the commits until passed."""
        self._sent = sent

    def sent_earlier(self, offset: int) -> dict[str, str]:
        """The rules whose commands for the record at ``offset`` were sent after the last
        commit, as far as the audit topic shows, with Intilery's eventIds."""
        return self._sent.commands.get(offset, {})

    def commit_again(self) -> None:
        """The last commit did not reach the broker: the next call commits again."""
        self._carried = -1

    def uncommitted(self) -> bool:
        """Whether the broker has yet to acknowledge the current position."""
        position = self.position()
        return position is not None and position != self.committed

    def acknowledged(self, offset: int) -> None:
        """The broker has a commit at ``offset`` (an older acknowledgement changes nothing)."""
        if self.committed is None or offset > self.committed:
            self.committed = offset
            self.moved_at = time.monotonic()
