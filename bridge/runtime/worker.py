"""The Kafka thread, behind one door.

librdkafka serves its rebalance callbacks inside ``consume()`` and blocks the
consumer's other calls meanwhile, so one thread makes every consumer call while the
event loop delivers. :class:`KafkaWorker` owns that thread and the consumer: the
loop asks it to read (one batch read ahead at most), pause or resume, commit,
measure lag and close; and it hands each of the consumer's callbacks to the loop.
Assignments and revocations are waited for (so a partition's records are tracked
before they are handled, and a revocation lets the commands on the wire finish
while the loop keeps delivering them); acknowledgements are only scheduled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bridge.kafka.listener import SourceListener
from bridge.kafka.sentlog import SentEarlier
from bridge.model import Fetched, Position, TopicPartitionKey
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.partitions import Partitions
from bridge.runtime.ports import RecordSource

FETCH_BATCH = 500
PAUSED_POLL_S = 0.1  # while paused, the consumer is polled this often: callbacks, membership


class KafkaWorker(SourceListener):
    """The consumer and its thread (see the module); :meth:`serve` before use."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kafka")
        self._source: RecordSource | None = None
        self._partitions: Partitions | None = None
        self._checkpoint: Checkpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._ahead: asyncio.Future[Fetched] | None = None
        self._polled_at = 0.0

    def serve(self, source: RecordSource, partitions: Partitions, checkpoint: Checkpoint) -> None:
        """What it reads from, and who handles the callbacks (built after it: they need it)."""
        self._source = source
        self._partitions = partitions
        self._checkpoint = checkpoint

    @property
    def source(self) -> RecordSource:
        assert self._source is not None, "serve() first"
        return self._source

    @property
    def paused(self) -> bool:
        return self.source.paused

    @property
    def fatal(self) -> str | None:
        """librdkafka's fatal error, if one came."""
        return self.source.fatal

    async def start(self) -> None:
        """Subscribe (or assign); on the event loop that is to handle the callbacks."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        await self._call(self.source.start)

    # --- reading ---

    async def read(self) -> Fetched:
        """The batch read ahead; else a fresh one, but while paused only every
        ``PAUSED_POLL_S``: each call wakes the Kafka thread, which then takes the GIL from
        the loop, and nothing arrives while paused but callbacks."""
        now = time.monotonic()
        if self._ahead is None and (not self.paused or now - self._polled_at >= PAUSED_POLL_S):
            self.read_ahead()
            self._polled_at = now
        if self._ahead is None:
            return Fetched([], {})
        fetched, self._ahead = await self._ahead, None
        return fetched

    def read_ahead(self) -> None:
        """Start reading the next batch now, while the loop handles this one."""
        self._ahead = self._call(self.source.fetch, FETCH_BATCH)

    @property
    def reading_ahead(self) -> bool:
        return self._ahead is not None

    async def poll(self) -> None:
        """Serve callbacks and keep the membership; the records read are dropped (never
        tracked, so never committed: the next owner reads them)."""
        await self._call(self.source.fetch, FETCH_BATCH)

    # --- the consumer's other calls ---

    async def pause(self, paused: bool) -> None:
        await self._call(self.source.pause, paused)

    async def commit(self, positions: list[Position], wait: bool) -> bool:
        """Step 3 of :mod:`bridge.runtime.checkpoint`: the request, with the rebalance count
        as the positions were taken."""
        return bool(await self._call(self.source.commit, positions, wait, self.source.rebalances))

    async def lag(
        self, last_read: dict[TopicPartitionKey, tuple[int, int | None]]
    ) -> list[tuple[TopicPartitionKey, int, float]]:
        result: list[tuple[TopicPartitionKey, int, float]] = await self._call(self.source.lag, last_read)
        return result

    async def close(self) -> None:
        if self._ahead is not None:
            await self._ahead  # read, never tracked, so never committed
            self._ahead = None
        await self._call(self.source.close)
        self._thread.shutdown()

    def _call(self, call: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``call`` on the Kafka thread, under way from now (not from the first await)."""
        return asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    # --- the consumer's callbacks, on the Kafka thread: each handled on the loop ---

    @property
    def _to(self) -> tuple[Partitions, Checkpoint]:
        assert self._partitions is not None and self._checkpoint is not None, "serve() first"
        return self._partitions, self._checkpoint

    def assigned(
        self,
        keys: list[TopicPartitionKey],
        finished: dict[TopicPartitionKey, set[int]],
        starts: dict[TopicPartitionKey, int] | None = None,
    ) -> None:
        self._wait(_run(self._to[0].assigned, keys, finished, starts))

    def sent_earlier(self, found: dict[TopicPartitionKey, SentEarlier]) -> None:
        self._wait(_run(self._to[0].sent_earlier, found))

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> None:
        revoked = set(keys)
        if not lost:  # a lost partition may already be another member's: nothing to wait for
            self.source.commit(self._wait(self._to[0].finish_revoked(revoked)), wait=True)
        self._wait(_run(self._to[0].forget, revoked))

    def committed(self, positions: list[Position]) -> None:
        self._soon(self._to[1].acknowledged, positions)

    def commit_failed(self, key: TopicPartitionKey | None) -> None:
        self._soon(self._to[1].failed, key)

    def map_too_large(self, refused_bytes: int | None) -> None:
        self._soon(self._to[1].map_refused, refused_bytes)

    def partitions_counted(self) -> None:
        self._soon(self._to[0].share_rate)

    def lost_to_retention(self, key: TopicPartitionKey, records: int) -> None:
        self._soon(self._to[0].count_lost, key, records)

    def _wait(self, work: Awaitable[Any]) -> Any:
        assert self._loop is not None and threading.get_ident() != self._loop_thread, "would wait for itself"
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()  # type: ignore[arg-type]

    def _soon(self, call: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(call, *args)


async def _run(call: Callable[..., None], *args: Any) -> None:
    call(*args)
