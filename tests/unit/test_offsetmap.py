"""The finished-offset map in commit metadata: round trip, the 4,096-byte bound, and
never naming an offset that was not finished (nor reading a foreign string as a map)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.kafka.offsetmap import FORMAT_1, MAX_BYTES, PREFIX, Committed, decode, encode, read

committed_offsets = st.integers(min_value=0, max_value=2**62)


@st.composite
def finished_sets(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A committed offset and finished offsets after it: sparse, dense or in long runs."""
    committed = draw(committed_offsets)
    shape = draw(st.sampled_from(["sparse", "dense", "runs"]))
    if shape == "runs":
        starts = draw(st.lists(st.integers(0, 200_000), max_size=40))
        lengths = draw(st.lists(st.integers(1, 5_000), min_size=len(starts), max_size=len(starts)))
        relative = {start + i for start, length in zip(starts, lengths, strict=True) for i in range(length)}
    else:
        spread = 100_000 if shape == "sparse" else 3_000
        relative = set(draw(st.lists(st.integers(0, spread), max_size=3_000)))
    return committed, sorted(committed + r for r in relative)


@settings(max_examples=150, deadline=None)
@given(finished_sets())
def test_round_trip_within_the_bound_never_naming_an_unfinished_offset(
    case: tuple[int, list[int]],
) -> None:
    committed, finished = case
    metadata, overflow = encode(committed, finished)
    assert len(metadata.encode()) <= MAX_BYTES
    named = decode(metadata, committed)
    assert named is not None
    assert named <= set(finished)  # never claims an unfinished offset
    # what is left out is the highest offsets, and counted
    assert sorted(named) == finished[: len(finished) - overflow]
    if overflow == 0:
        assert named == set(finished)


@settings(max_examples=100, deadline=None)
@given(finished_sets(), st.integers(min_value=16, max_value=600))
def test_a_smaller_bound_keeps_the_lowest_offsets_that_fit(case: tuple[int, list[int]], limit: int) -> None:
    committed, finished = case
    metadata, overflow = encode(committed, finished, limit)
    assert len(metadata) <= limit
    kept = len(finished) - overflow
    named = decode(metadata, committed)
    assert named is not None and sorted(named) == finished[:kept]
    if overflow:  # one more offset would not have fitted
        assert len(encode(committed, finished[: kept + 1], limit=10**9)[0]) > limit


def test_the_smaller_encoding_is_chosen() -> None:
    dense = list(range(100, 100 + 5_000))  # one run: a few bytes of run lengths
    sparse_but_close = list(range(100, 2_100, 2))  # every other offset: a bitset
    assert encode(100, dense)[0].startswith(PREFIX + "r") and len(encode(100, dense)[0]) < 20
    assert encode(100, sparse_but_close)[0].startswith(PREFIX + "b")


@settings(max_examples=100, deadline=None)
@given(finished_sets(), committed_offsets)
def test_a_map_written_for_another_offset_names_nothing(case: tuple[int, list[int]], other: int) -> None:
    committed, finished = case
    metadata, _ = encode(committed, finished)
    if other != committed and metadata:
        assert decode(metadata, other) is None


@given(st.text(max_size=200), committed_offsets)
def test_foreign_or_corrupt_metadata_is_never_a_map(text: str, committed: int) -> None:
    """Another tool's string, or ours truncated or of a newer format: no map, no crash."""
    assert decode(text, committed) in (None, set()) or text.startswith(PREFIX)
    if not text.startswith(PREFIX):
        assert decode(text, committed) == (set() if text == "" else None)


@settings(max_examples=100, deadline=None)
@given(finished_sets(), st.data())
def test_corrupted_maps_never_crash(case: tuple[int, list[int]], data: st.DataObject) -> None:
    committed, finished = case
    metadata, _ = encode(committed, finished)
    cut = data.draw(st.integers(0, len(metadata)))
    for broken in (metadata[:cut], "ib2" + metadata[3:], metadata[:cut] + "!" + metadata[cut:]):
        result = decode(broken, committed)
        assert result is None or result <= set(finished)


def test_a_run_longer_than_any_bridge_holds_is_refused() -> None:
    run = bytes([0]) + bytes([0xFF] * 8 + [0x01])  # nothing unfinished, then a 2**63-long run
    assert (
        decode(PREFIX + "r" + base64.b64encode(bytes([5, 0]) + run).decode(), 5) is None
    )  # committed 5, time 0
    assert decode(FORMAT_1 + "r" + base64.b64encode(bytes([5]) + run).decode(), 5) is None


def test_no_finished_offsets_is_the_time_alone() -> None:
    metadata, _ = encode(7, [], since_ms=1_764_000_000_000)
    assert read(metadata, 7) == Committed(set(), 1_764_000_000_000)
    assert encode(7, [], limit=4) == ("", 0)  # not even the time fits: no metadata
    assert read("", 7) == Committed(set(), None)


@given(finished_sets(), st.integers(min_value=0, max_value=2**45))
def test_the_time_goes_with_the_map(case: tuple[int, list[int]], since_ms: int) -> None:
    committed, finished = case
    metadata, overflow = encode(committed, finished, since_ms=since_ms)
    found = read(metadata, committed)
    assert found is not None and found.since_ms == since_ms
    assert sorted(found.finished) == finished[: len(finished) - overflow]


def test_format_1_is_still_read_without_a_time() -> None:
    """A commit of a bridge before format 2 (a rolling upgrade): its map, no time."""
    bits = bytes([0b101])  # offsets 10 and 12 after committed 10
    assert read(FORMAT_1 + "b" + base64.b64encode(bytes([10]) + bits).decode(), 10) == Committed(
        {10, 12}, None
    )
