"""The Kafka thread, behind one door.

librdkafka serves its rebalance callbacks inside ``consume()`` and blocks the
consumer's other calls meanwhile, so one thread makes every consumer call while the
event loop delivers. :class:`KafkaWorker` owns that thread and the consumer: the
loop asks it to read (one batch read ahead at most), pause or resume, commit,
measure lag and close. What the consumer tells meanwhile comes to the loop through
one queue (:mod:`bridge.runtime.events`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bridge.model import Fetched, Position, TopicPartitionKey
from bridge.runtime.ports import RecordSource

FETCH_BATCH = 500
PAUSED_POLL_S = 0.1  # while paused, the consumer is polled this often: callbacks, membership


class KafkaWorker:
    """The consumer and its thread (see the module)."""

    def __init__(self, source: RecordSource) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kafka")
        self.source = source
        self._ahead: asyncio.Future[Fetched] | None = None
        self._polled_at = 0.0

    @property
    def paused(self) -> bool:
        return self.source.paused

    @property
    def fatal(self) -> str | None:
        """librdkafka's fatal error, if one came."""
        return self.source.fatal

    async def start(self) -> None:
        """Subscribe (or assign)."""
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
