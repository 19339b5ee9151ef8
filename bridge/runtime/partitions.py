"""The partitions this instance owns: taking them on, handing them over cleanly, and
what of them may be committed.

librdkafka calls back on the Kafka thread (inside :meth:`Source.fetch`);
:class:`OnTheLoop` runs each callback on the event loop, the Kafka thread waiting
for assignments and revocations, so that records of a partition are tracked
before they are handled, and a revocation lets the commands on the wire finish.

A clean hand-over (a revocation, not a loss), step by step:

1. the partitions are marked releasing: no new command starts for them;
2. their lanes finish the commands on the wire, within ``delivery.rebalance_grace_s``,
   and their dead letters reach the broker;
3. their finished work is committed synchronously, with its finished-offsets map;
4. they are forgotten: their lanes are cancelled, the rate share recomputed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bridge.intilery.ratelimit import Limiter
from bridge.kafka.offsets import OffsetTracker
from bridge.kafka.source import SourceListener
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.model import Position, TopicPartitionKey
from bridge.runtime.ports import DeadLetterSink, RecordSource
from bridge.runtime.records import RecordPath

log = structlog.get_logger("bridge")


class Partitions:
    """Assignment, clean hand-over (see the module's steps), rate share and commits."""

    def __init__(
        self,
        source: RecordSource,
        path: RecordPath,
        offsets: OffsetTracker,
        metrics: Metrics,
        *,
        grace_s: float,
        dead_letters: DeadLetterSink | None = None,
        limiter: Limiter | None = None,
        window: Window | None = None,
    ) -> None:
        """``limiter``: the account's rate limit, shared by the group's replicas (each takes
        the share of the partitions it holds); None when the rate is not shared."""
        self.source, self.path, self.offsets, self.metrics = source, path, offsets, metrics
        self.grace_s, self.dead_letters, self.limiter, self.window = grace_s, dead_letters, limiter, window

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        for key in keys:
            part = self.offsets.assign(key, finished.get(key, ()))
            if starts and key in starts:
                part.start_at(starts[key])  # committed with the next commit until the broker has it
        self.share_rate()

    def share_rate(self) -> None:
        """This replica's share of the account's rate: the share of the partitions it holds."""
        total = self.source.partitions_total
        if self.limiter is None or not total:
            return
        before = self.limiter.limit
        self.limiter.share(len(self.offsets) / total)
        if self.limiter.limit != before:
            log.info(
                "rate_limit_shared",
                partitions=len(self.offsets),
                of=total,
                per_second=round(self.limiter.limit, 2),
                burst=round(self.limiter.capacity, 1),
            )

    async def finish_revoked(self, keys: set[TopicPartitionKey]) -> list[Position]:
        """Steps 1 and 2 of a clean hand-over; gives the partitions' last commit (step 3)."""
        self.path.releasing |= keys
        deadline = time.monotonic() + self.grace_s
        finished = await self.path.lanes.wait(self.grace_s, lambda lane: lane[:2] in keys)  # type: ignore[index]
        while self.dead_letters_pending() and time.monotonic() < deadline:
            self.dead_letters.poll()  # type: ignore[union-attr]  # their records finish on delivery
            await asyncio.sleep(0.01)
        if not finished or self.dead_letters_pending():
            log.warning(
                "rebalance_grace_expired",
                partitions=sorted(f"{t}[{p}]" for t, p in keys),
                grace_s=self.grace_s,
            )
        return self.committable(keys, force=True)

    def forget(self, keys: set[TopicPartitionKey]) -> None:
        """Step 4: their records still unfinished stay uncommitted, for the next owner."""
        for key in keys:
            self.offsets.revoke(key)
            self.metrics.forget_partition(*key)
        self.path.lanes.cancel(lambda lane: lane[:2] in keys)  # type: ignore[index]
        self.path.releasing -= keys
        self.share_rate()

    def committable(self, keys: set[TopicPartitionKey] | None = None, force: bool = False) -> list[Position]:
        """What to commit: what changed since the last commit (``force``: everything)."""
        if self.window is not None and not self.window.commits:
            return []
        positions = self.offsets.to_commit(keys, force)
        if left_out := sum(position.left_out for position in positions):
            self.metrics.map_overflow.inc(left_out)
        return positions

    def count_lost(self, key: TopicPartitionKey, records: int) -> None:
        self.metrics.records_lost.labels(key[0], str(key[1])).inc(records)

    def shrink_map(self, refused_bytes: int | None) -> None:
        if self.offsets.shrink_map(refused_bytes):
            log.warning(
                "offset_map_too_large",
                refused_bytes=refused_bytes,
                limit_bytes=self.offsets.map_limit,
                hint="the broker's offset.metadata.max.bytes is below Kafka's default of 4096",
            )

    def dead_letters_pending(self) -> bool:
        return bool(self.dead_letters and self.dead_letters.pending)


class OnTheLoop(SourceListener):
    """The source's callbacks, each handled on the event loop (see the module)."""

    def __init__(self) -> None:
        self.partitions: Partitions | None = None  # set once built (it needs the source)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None

    def serve(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def start(self) -> None:
        """Call on the event loop that is to handle the callbacks."""
        self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()

    @property
    def _to(self) -> Partitions:
        assert self.partitions is not None, "serve() first"
        return self.partitions

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        self._wait(self._call(self._to.assigned, keys, finished, starts))

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> None:
        revoked = set(keys)
        if not lost:  # a lost partition may already be another member's: nothing to wait for
            self._to.source.commit(self._wait(self._to.finish_revoked(revoked)), wait=True)
        self._wait(self._call(self._to.forget, revoked))

    def committed(self, positions: list[Position]) -> None:
        self._soon(self._to.offsets.mark_committed, positions)

    def commit_failed(self, key: TopicPartitionKey | None) -> None:
        self._soon(self._to.offsets.commit_failed, key)

    def partitions_counted(self) -> None:
        self._soon(self._to.share_rate)

    def map_too_large(self, refused_bytes: int | None) -> None:
        self._soon(self._to.shrink_map, refused_bytes)

    def lost_to_retention(self, key: TopicPartitionKey, records: int) -> None:
        self._soon(self._to.count_lost, key, records)

    def _wait(self, work: Awaitable[Any]) -> Any:
        assert self.loop is not None and threading.get_ident() != self.loop_thread, "would wait for itself"
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()  # type: ignore[arg-type]

    def _soon(self, call: Callable[..., None], *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(call, *args)

    @staticmethod
    async def _call(call: Callable[..., None], *args: Any) -> None:
        call(*args)
