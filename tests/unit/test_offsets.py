"""A partition's offsets: a committed offset never passes an unfinished record."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.kafka.offsetmap import decode, read
from bridge.kafka.offsets import PartitionOffsets
from bridge.kafka.sentlog import SentEarlier


def taken(part: PartitionOffsets, force: bool = False) -> tuple[int, set[int] | None, int] | None:
    """A commit as its offset, the finished offsets its map names, and those left out."""
    commit = part.to_commit(force)
    return None if commit is None else (commit[0], decode(commit[1], commit[0]), commit[2])


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
    assert taken(part) == (13, set(), 0)  # the first record not finished (12 does not exist)
    part.finish(14)
    offset, metadata, _ = part.to_commit() or (None, "", 0)
    assert offset == 13 and decode(metadata, 13) == {14}
    part.finish(13)
    assert taken(part) == (15, set(), 0)
    assert taken(part, force=True) == (15, set(), 0)  # on revocation and shutdown: whatever is known


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
    assert taken(part) == (1, set(), 0) and part.to_commit() is None
    part.commit_again()
    assert taken(part) == (1, set(), 0)


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


def since(part: PartitionOffsets, force: bool = False) -> int | None:
    """The time a commit of ``part`` says commands from its offset on may have been sent since."""
    offset, metadata, _ = part.to_commit(force) or (0, "", 0)
    found = read(metadata, offset)
    assert found is not None
    return found.since_ms


def test_a_commit_says_since_when_its_records_may_have_been_sent() -> None:
    """Since the first unfinished record was read; now when none is unfinished; 0 on a last
    commit (revocation, shutdown) with none unfinished: nothing can be sent after it."""
    part = PartitionOffsets()
    before = time.time() * 1000
    part.add(5, now=time.monotonic() - 30)  # read 30 s ago, still unfinished
    part.add(6, now=time.monotonic())
    part.finish(6)
    assert before - 31_000 < (since(part) or 0) < before - 29_000
    assert before - 31_000 < (since(part, force=True) or 0) < before - 29_000  # unfinished: never 0
    part.finish(5)
    assert int(before) <= (since(part) or 0) <= time.time() * 1000
    assert since(part, force=True) == 0


def test_the_previous_owners_sends_keep_its_time_until_passed() -> None:
    """Assigned with commands the audit topic shows sent at offsets 8 and 9: commits keep the
    previous owner's time (earlier than any read here) until their offset passes 9."""
    part = PartitionOffsets()
    part.inherit(SentEarlier(1_000, {8: {"sms": "e-1"}, 9: {"email": "e-2"}}))
    assert part.sent_earlier(8) == {"sms": "e-1"} and part.sent_earlier(7) == {}
    for offset in (7, 8, 9):
        part.add(offset, now=time.monotonic())
    part.finish(7)
    assert since(part) == 1_000
    part.finish(8)
    assert since(part, force=True) == 1_000  # 9 is still ahead
    part.finish(9)
    assert since(part, force=True) == 0 and part.sent_earlier(9) == {}
