"""Per-key ordering within a partition: one queue and one task per Kafka key.

Takes jobs (coroutine functions) with a lane key; runs them strictly in submit order
within a lane, lanes concurrently. A lane's task ends when its queue is empty, so
idle keys cost nothing. Each partition has its own :class:`Lanes`
(:class:`~bridge.runtime.state.PartitionState`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable

Job = Callable[[], Awaitable[None]]


class Lanes:
    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[Job]] = {}
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def submit(self, lane: Hashable, job: Job) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            self._tasks[lane] = asyncio.create_task(self._drain(lane, queue))
        queue.append(job)

    async def _drain(self, lane: Hashable, queue: deque[Job]) -> None:
        try:
            while queue:
                await queue[0]()
                queue.popleft()
        finally:
            if self._queues.get(lane) is queue:
                del self._queues[lane]
                del self._tasks[lane]

    def cancel(self) -> int:
        """Abandon every lane (their work stays unfinished); gives how many there were."""
        abandoned = len(self._tasks)
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._queues.clear()
        return abandoned


async def wait_for(lanes: Iterable[Lanes], timeout: float) -> bool:
    """Wait up to ``timeout`` for these lanes to empty; True if they did."""
    lanes = list(lanes)
    tasks = [task for each in lanes for task in each._tasks.values()]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    return not any(len(each) for each in lanes)
