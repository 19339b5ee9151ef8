"""The finished-offset map in commit metadata: round trip, the 4,096-byte bound, and
never naming an offset that was not finished (nor reading a foreign string as a map)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.kafka.offsetmap import MAX_BYTES, PREFIX, decode, encode

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
    payload = bytes([5]) + bytes([0]) + bytes([0xFF] * 8 + [0x01])  # committed 5, then a 2**63-long run
    assert decode(PREFIX + "r" + base64.b64encode(payload).decode(), 5) is None


def test_no_finished_offsets_is_no_metadata() -> None:
    assert encode(7, []) == ("", 0)
    assert decode("", 7) == set()
