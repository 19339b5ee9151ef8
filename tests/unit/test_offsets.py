"""A partition's offsets: a committed offset never passes an unfinished record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.kafka.offsetmap import decode
from bridge.kafka.offsets import PartitionOffsets


def test_commits_the_first_unfinished_record_with_a_map_of_those_finished_after_it() -> None:
    part = PartitionOffsets()
    for offset in (10, 11, 13, 14):
        part.add(offset)
    assert part.to_commit() is None  # nothing finished: nothing to say
    part.finish(11)
    offset, metadata, left_out = part.to_commit() or (None, "", 0)
    assert offset == 10 and decode(metadata, 10) == {11} and left_out == 0
    assert part.to_commit() is None  # nothing changed since
    part.finish(10)
    assert part.to_commit() == (13, "", 0)  # the first record not finished (12 does not exist)
    part.finish(14)
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 13 and decode(metadata, 13) == {14}
    part.finish(13)
    assert part.to_commit() == (15, "", 0)
    assert part.to_commit(force=True) == (15, "", 0)  # on revocation and shutdown: whatever is known


def test_a_record_left_aside_holds_the_position_and_is_not_unfinished() -> None:
    """A redrive leaves a dead letter that fails again: no commit passes it, the records
    after it are named finished, and nothing counts as unfinished any more."""
    part = PartitionOffsets()
    for offset in (3, 4, 5):
        part.add(offset)
    part.leave(3)
    part.finish(4)
    part.finish(5)
    assert part.unfinished() == 0 and len(part) == 0  # nothing holds work back
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 3 and decode(metadata, 3) == {4, 5}
    for offset in range(6, 20):
        part.add(offset)
    part.finish(7)
    assert part.unfinished() == 13 and len(part) == 14  # from 6, the first open one, on


def test_a_failed_commit_is_taken_again() -> None:
    part = PartitionOffsets()
    part.add(0)
    part.finish(0)
    assert part.to_commit() == (1, "", 0) and part.to_commit() is None
    part.commit_failed()
    assert part.to_commit() == (1, "", 0)


def test_offsets_named_by_the_last_map_are_finished_until_passed() -> None:
    """Assigned with the map {12, 13}: those records are known finished before they are read
    again, and every commit keeps naming them until its offset passes them."""
    part = PartitionOffsets(finished_earlier={12, 13})
    part.add(10)
    assert part.finished_earlier(12) and part.finished_earlier(13) and not part.finished_earlier(11)
    part.finish(10)
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 11 and decode(metadata, 11) == {12, 13}  # 12, 13 not read yet, still named
    part.add(11)
    part.add(12)
    part.finish(12)  # read again and skipped
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 11 and decode(metadata, 11) == {12, 13}
    part.finish(11)
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 13 and decode(metadata, 13) == {13}  # 13 itself is named: it is not read yet
    assert not part.finished_earlier(12)


def test_refuses_offsets_going_backwards() -> None:
    part = PartitionOffsets()
    part.add(5)
    with pytest.raises(ValueError):
        part.add(5)


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
        position, metadata, _ = part.to_commit(force=True) or (None, "", 0)
        unfinished = [o for o in offsets if o not in done]
        if position is not None:
            assert not unfinished or position <= min(unfinished)
            assert all(o in done for o in offsets if o < position)
            named = decode(metadata, position)
            assert named is not None and named == {o for o in done if o >= position}  # exactly the finished
        expected_prefix = [o for o in offsets if not unfinished or o < min(unfinished)]
        if expected_prefix and not unfinished:
            assert position == expected_prefix[-1] + 1
        elif unfinished:
            assert position == min(unfinished)
    # What the tracker still holds is exactly the records from the first unfinished one on.
    first_open = min((o for o in offsets if o not in done), default=offsets[-1] + 1)
    assert len(part) == len([o for o in offsets if o >= first_open])
