"""The checkpoint's steps (what is committable, the map, the request, the acknowledgement,
a refused map) and what the partitions' states answer together."""

from __future__ import annotations

import asyncio

from bridge.kafka.offsetmap import MAX_BYTES, decode
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.model import Position
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.state import Assignment


class Requests:
    """Step 3, the request: what the Kafka thread was asked to commit."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[Position], bool]] = []

    async def commit(self, positions: list[Position], wait: bool) -> bool:
        self.sent.append((positions, wait))
        return True


def built(window: Window | None = None) -> tuple[Assignment, Checkpoint, Requests]:
    states, requests = Assignment(), Requests()
    return states, Checkpoint(states, requests, Metrics(), window), requests


def test_commits_only_assigned_and_changed_partitions() -> None:
    states, checkpoint, requests = built()
    part = states.assign(("t", 0))._offsets
    part.add(0)
    part.finish(0)
    assert checkpoint.behind()
    assert asyncio.run(checkpoint.commit())
    assert [([(*p.tp, p.offset) for p in sent], wait) for sent, wait in requests.sent] == [
        ([("t", 0, 1)], False)
    ]
    assert checkpoint.committable() == []
    checkpoint.acknowledged([Position("t", 0, 1)])
    assert not checkpoint.behind()
    checkpoint.not_committed(None)
    assert [p.offset for p in checkpoint.committable()] == [1]
    states.revoke(("t", 0))
    checkpoint.acknowledged([Position("t", 0, 5)])  # a late callback for a revoked partition changes nothing
    assert checkpoint.committable(force=True) == [] and states.unfinished() == 0


def test_a_map_the_broker_refuses_as_too_large_shrinks_to_half_of_it_down_to_none() -> None:
    """A broker whose offset.metadata.max.bytes is below Kafka's 4,096 refuses every commit
    with a larger map: without shrinking, the offsets would never move again."""
    states, checkpoint, _ = built()
    part = states.assign(("t", 0))._offsets
    for offset in range(20_000):
        part.add(offset)
    for offset in range(1, 20_000, 2):  # offset 0 unfinished, every other one after it finished
        part.finish(offset)
    (full,) = checkpoint.committable()
    assert len(full.metadata) <= MAX_BYTES and full.left_out == 0  # all 10,000 named
    checkpoint.map_refused(len(full.metadata))
    assert checkpoint.map_limit == len(full.metadata) // 2
    (smaller,) = checkpoint.committable()  # the refused commit is taken again, within the new bound
    assert smaller.offset == 0 and len(smaller.metadata) <= checkpoint.map_limit
    assert smaller.left_out > 0 and decode(smaller.metadata, 0) == set(
        range(1, 20_000, 2)[: 10_000 - smaller.left_out]
    )
    checkpoint.map_refused(len(full.metadata))  # a commit taken before the last shrink
    assert checkpoint.map_limit == len(full.metadata) // 2
    while checkpoint.map_limit:
        checkpoint.map_refused(None)
    (bare,) = checkpoint.committable(force=True)
    assert checkpoint.map_limit == 0 and bare.metadata == "" and bare.left_out == 10_000


def test_bytes_and_waiting_are_those_of_the_unfinished_records() -> None:
    states = Assignment()
    part = states.assign(("t", 0))._offsets
    for offset, (size, at) in enumerate([(100, 10.0), (200, 11.0), (300, 12.0)]):
        part.add(offset, size, at)
    assert states.held_bytes() == 600 and part.waiting_since() == 10.0
    part.finish(1)  # behind an unfinished one: its bytes are free, the oldest still waits
    assert states.held_bytes() == 400 and states.waiting(20.0) == {("t", 0): 10.0}
    part.finish(0)
    assert states.held_bytes() == 300 and states.waiting(20.0) == {("t", 0): 8.0}
    part.leave(2)
    assert states.held_bytes() == 0 and states.waiting(20.0) == {("t", 0): 0.0}


def test_a_partition_is_stuck_when_its_commit_has_not_moved_while_records_wait() -> None:
    states, checkpoint, _ = built()
    idle, busy = states.assign(("t", 0))._offsets, states.assign(("t", 1))._offsets
    now = busy.moved_at
    busy.add(0, 1, now + 10)  # read 10 s after the partition came
    assert states.stuck(now + 300, 300) == []  # waited 290 s
    assert states.stuck(now + 311, 300) == [("t", 1)] and idle.waiting_since() is None
    checkpoint.acknowledged([Position("t", 1, 0)])  # the commit moved (not past the record)
    assert states.stuck(busy.moved_at + 299, 300) == []


def test_a_start_position_is_committed_until_the_broker_has_it() -> None:
    """A partition the group never committed: its start goes with the next commit, and
    again after a failed one, even when nothing is read (so the next member starts there)."""
    states, checkpoint, _ = built()
    states.assign(("t", 0))._offsets.start_at(42)
    assert [(p.offset, decode(p.metadata, p.offset)) for p in checkpoint.committable()] == [(42, set())]
    assert checkpoint.committable() == []
    checkpoint.not_committed(None)
    assert [p.offset for p in checkpoint.committable()] == [42]
    checkpoint.acknowledged([Position("t", 0, 42)])
    assert not checkpoint.behind()


def test_a_replay_that_records_no_progress_commits_nothing() -> None:
    states, checkpoint, requests = built(Window("t", "replay-g", commits=False, bounds={0: (0, 10)}))
    part = states.assign(("t", 0))._offsets
    part.add(0)
    part.finish(0)
    assert checkpoint.committable(force=True) == [] and not checkpoint.behind()
    assert asyncio.run(checkpoint.commit(wait=True)) and requests.sent == [([], True)]


def test_a_partition_state_stops_sending_once_releasing_or_past_where_it_halted() -> None:
    state = Assignment().assign(("t", 0))
    assert state.sends(5)
    state.halt(7)
    state.halt(9)  # a later failure does not move the halt forward
    assert state.sends(6) and not state.sends(7) and not state.sends(9)
    state.halted_at = None
    state.releasing = True
    assert not state.sends(0)


def test_read_through_is_the_partition_s_end_or_the_window_s() -> None:
    states = Assignment()
    assert not states.read_through(None)  # nothing assigned: nothing read
    state = states.assign(("t", 0))
    window = Window("t", "replay-g", commits=False, bounds={0: (0, 10)})
    assert not states.read_through(None) and not states.read_through(window)
    state.last_read = (9, None)
    assert states.read_through(window) and not states.read_through(None)
    states.reached({("t", 0): True, ("t", 1): True})  # news of a partition not assigned is dropped
    assert states.read_through(None) and len(states) == 1
