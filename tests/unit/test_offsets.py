"""The offset tracker: a committed offset never passes an unfinished record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.offsets import OffsetTracker, PartitionOffsets, Position


def test_commits_one_past_the_contiguous_finished_prefix() -> None:
    part = PartitionOffsets()
    for offset in (10, 11, 13, 14):
        part.add(offset)
    assert part.to_commit() is None
    part.finish(11)
    assert part.to_commit() is None
    part.finish(10)
    assert part.to_commit() == 12
    part.finish(14)
    assert part.to_commit() == 12
    part.finish(13)
    assert part.to_commit() == 15
    part.committed = 15
    assert part.to_commit() is None


def test_refuses_offsets_going_backwards() -> None:
    part = PartitionOffsets()
    part.add(5)
    with pytest.raises(ValueError):
        part.add(5)


def test_tracker_commits_only_assigned_and_new_positions() -> None:
    tracker = OffsetTracker()
    part = tracker.assign(("t", 0))
    part.add(0)
    part.finish(0)
    assert tracker.to_commit() == [Position("t", 0, 1)]
    tracker.mark_committed(Position("t", 0, 1))
    assert tracker.to_commit() == []
    tracker.revoke(("t", 0))
    tracker.mark_committed(Position("t", 0, 5))  # a late callback for a revoked partition changes nothing
    assert tracker.to_commit() == [] and tracker.unfinished() == 0


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60),
    order=st.randoms(use_true_random=False),
    cut=st.floats(min_value=0, max_value=1),
)
def test_commit_never_passes_an_unfinished_record(gaps: list[int], order: object, cut: float) -> None:
    offsets, at = [], 0
    for gap in gaps:  # offsets with holes, as after compaction or transactions
        at += gap
        offsets.append(at)
    part = PartitionOffsets()
    for offset in offsets:
        part.add(offset)
    finished = list(offsets)
    order.shuffle(finished)  # type: ignore[attr-defined]
    finished = finished[: int(len(finished) * cut)]
    done: set[int] = set()
    for offset in finished:
        part.finish(offset)
        done.add(offset)
        position = part.to_commit()
        unfinished = [o for o in offsets if o not in done]
        if position is not None:
            assert not unfinished or position <= min(unfinished)
            assert all(o in done for o in offsets if o < position)
        expected_prefix = [o for o in offsets if not unfinished or o < min(unfinished)]
        if expected_prefix:
            assert position == expected_prefix[-1] + 1
    # What the tracker still holds is exactly the records from the first unfinished one on.
    first_open = min((o for o in offsets if o not in done), default=offsets[-1] + 1)
    assert len(part) == len([o for o in offsets if o >= first_open])
