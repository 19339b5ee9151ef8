"""Per-key lanes: strict order within a lane, lanes side by side, idle lanes cost nothing."""

from __future__ import annotations

import asyncio
from functools import partial

from bridge.runtime.lanes import Lanes, wait_for


class Recorder:
    """Handles an item by waiting on its own event, so a test decides when each ends."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def handle(self, item: str) -> None:
        self.started.append(item)
        await self.release.setdefault(item, asyncio.Event()).wait()
        self.finished.append(item)

    def end(self, item: str) -> None:
        self.release.setdefault(item, asyncio.Event()).set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lane_runs_its_items_in_order_while_other_lanes_run_beside_it() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        lanes = Lanes()
        for lane, item in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]:
            lanes.submit(lane, partial(recorder.handle, item))
        await settle()
        assert recorder.started == ["a1", "b1"] and len(lanes) == 2  # one at a time per lane
        recorder.end("b1")
        await settle()
        assert recorder.started == ["a1", "b1", "b2"]  # b goes on while a1 is still running
        recorder.end("a1")
        await settle()
        assert recorder.started[-1] == "a2" and recorder.finished == ["b1", "a1"]
        recorder.end("a2")
        recorder.end("b2")
        assert await wait_for([lanes], 1)
        assert recorder.finished[:2] == ["b1", "a1"] and sorted(recorder.finished[2:]) == ["a2", "b2"]
        assert len(lanes) == 0  # an emptied lane's task is gone

    asyncio.run(scenario())


def test_cancel_abandons_one_partition_s_lanes_and_wait_reports_a_time_out() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        partition_0, partition_1 = Lanes(), Lanes()
        for lanes, item in [(partition_0, "p0"), (partition_0, "p0-next"), (partition_1, "p1")]:
            lanes.submit("k1", partial(recorder.handle, item))
        await settle()
        assert not await wait_for([partition_0], 0.05)  # still running: the time-out says so
        assert partition_0.cancel() == 1
        await settle()
        assert "p0-next" not in recorder.started and "p0" not in recorder.finished
        recorder.end("p1")
        assert await wait_for([partition_0, partition_1], 1) and recorder.finished == ["p1"]
        partition_0.submit("k1", partial(recorder.handle, "again"))  # a cancelled lane can start afresh
        recorder.end("again")
        assert await wait_for([partition_0], 1) and recorder.finished == ["p1", "again"]

    asyncio.run(scenario())
