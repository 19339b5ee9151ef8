"""Per-key ordering: one queue and one task per (topic, partition, key).

Takes work items with a lane key; runs ``handle`` on each, strictly in submit
order within a lane, lanes concurrently. A lane's task ends when its queue is
empty, so idle keys cost nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

W = TypeVar("W")


class Lanes(Generic[W]):
    def __init__(self, handle: Callable[[W], Awaitable[None]]) -> None:
        self._handle = handle
        self._queues: dict[Hashable, deque[W]] = {}
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def submit(self, lane: Hashable, work: W) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            self._tasks[lane] = asyncio.create_task(self._drain(lane, queue))
        queue.append(work)

    async def _drain(self, lane: Hashable, queue: deque[W]) -> None:
        try:
            while queue:
                await self._handle(queue[0])
                queue.popleft()
        finally:
            if self._queues.get(lane) is queue:
                del self._queues[lane]
                del self._tasks[lane]

    def cancel(self, which: Callable[[Hashable], bool]) -> int:
        """Abandon the lanes ``which`` selects (their work stays unfinished)."""
        doomed = [lane for lane in self._tasks if which(lane)]
        for lane in doomed:
            self._tasks.pop(lane).cancel()
            del self._queues[lane]
        return len(doomed)

    async def wait(self, timeout: float, which: Callable[[Hashable], bool] = lambda lane: True) -> bool:
        """Wait up to ``timeout`` for the lanes ``which`` selects (all by default) to empty;
        True if they did."""
        tasks = [task for lane, task in self._tasks.items() if which(lane)]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return not any(which(lane) for lane in self._tasks)
