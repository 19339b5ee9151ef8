"""The finished offsets above a committed one, carried in the commit's metadata.

A commit's offset is the first record of its partition not yet finished; records
after it may be finished already (commands of other keys run concurrently). The
commit's metadata string names them, so that whoever reads the partition next
skips them instead of sending their commands a second time.

The string is ``ib2`` (ours, format 2), then ``b`` (a bitset) or ``r`` (run
lengths), whichever is shorter, then base64 of: the committed offset as a varint
(a map is read only against the offset it was written with), the time since when
the records from the committed offset on may have had commands sent (epoch
milliseconds, a varint: when the first unfinished one was read; 0 when none can
have been: the partition was handed over with every record read finished), and

- ``b``: bit ``i`` (least significant first within each byte) set when offset
  ``committed + i`` is finished;
- ``r``: varint run lengths from the committed offset on, alternating: not
  finished, finished, not finished, ...

Kafka bounds the metadata by the broker's ``offset.metadata.max.bytes`` (4,096
by default); when the map does not fit, the lowest finished offsets that fit are
kept and the rest counted as overflow (they are sent again after a restart, as
they would be without a map). Format 1 (``ib1``, no time) is still read. Anything
else (another tool's metadata, a newer format, a corrupt string) reads as no map
at all: never a skip.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX, FORMAT_1 = "ib2", "ib1"
BITSET, RUNS = "b", "r"
MAX_BYTES = 4096
MAX_NAMED = 1_000_000  # more finished offsets than any bridge holds unfinished: not a map of ours


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit's metadata says of the records from its offset on."""

    finished: set[int]
    # epoch ms since when their commands may have been sent; 0: none can have been;
    # None: not said (no metadata, format 1)
    since_ms: int | None = None


def encode(
    committed: int, finished: Sequence[int], limit: int = MAX_BYTES, since_ms: int = 0
) -> tuple[str, int]:
    """The metadata naming ``finished`` (ascending, each at or after ``committed``) and
    ``since_ms``, at most ``limit`` bytes; and how many of the highest offsets were left
    out ("" when not even the time fits)."""
    metadata = _smallest(committed, finished, since_ms)
    if len(metadata) <= limit:
        return metadata, 0
    low, high = 0, len(finished)  # the most offsets that fit: sizes grow with the count kept
    while low < high:
        middle = (low + high + 1) // 2
        if len(_smallest(committed, finished[:middle], since_ms)) <= limit:
            low = middle
        else:
            high = middle - 1
    kept = _smallest(committed, finished[:low], since_ms)
    return kept if len(kept) <= limit else "", len(finished) - low


def decode(metadata: str, committed: int) -> set[int] | None:
    """The finished offsets named in ``metadata`` written for ``committed``: an empty
    set for no metadata, None for metadata that is not a map of ours for that offset."""
    found = read(metadata, committed)
    return None if found is None else found.finished


def read(metadata: str, committed: int) -> Committed | None:
    """What ``metadata`` written for ``committed`` says (nothing finished, no time, for no
    metadata); None for metadata that is not a map of ours for that offset."""
    if not metadata:
        return Committed(set())
    known = metadata[: len(PREFIX)]
    if known not in (PREFIX, FORMAT_1) or len(metadata) < len(PREFIX) + 1:
        return None
    mode, text = metadata[len(PREFIX)], metadata[len(PREFIX) + 1 :]
    try:
        payload = base64.b64decode(text.encode("ascii"), validate=True)
        base, position = _read_varint(payload, 0)
        if base != committed:
            return None
        since_ms = None
        if known == PREFIX:
            since_ms, position = _read_varint(payload, position)
        finished = _finished(mode, payload, position, committed)
    except (ValueError, binascii.Error, UnicodeEncodeError, IndexError):
        return None
    return None if finished is None else Committed(finished, since_ms)


def _finished(mode: str, payload: bytes, position: int, committed: int) -> set[int] | None:
    """The finished offsets of a bitset or run lengths from ``position`` on."""
    if mode == BITSET:
        return {
            committed + index * 8 + bit
            for index, byte in enumerate(payload[position:])
            for bit in range(8)
            if byte >> bit & 1
        }
    if mode == RUNS:
        found: set[int] = set()
        offset, finished_run = committed, False
        while position < len(payload):
            length, position = _read_varint(payload, position)
            if finished_run:
                if len(found) + length > MAX_NAMED:
                    return None
                found.update(range(offset, offset + length))
            offset, finished_run = offset + length, not finished_run
        return found
    return None


def _smallest(committed: int, finished: Sequence[int], since_ms: int) -> str:
    if not finished:
        return _metadata(RUNS, committed, since_ms, b"")
    runs = _runs(finished)
    size = (finished[-1] - committed) // 8 + 1  # the bitset's length
    body = bytearray()
    at = committed
    for start, end in runs:
        for value in (start - at, end - start):
            body += _varint(value)
        at = end
        if len(body) >= size:  # the bitset is no longer: take it
            bits = sum(((1 << (stop - first)) - 1) << (first - committed) for first, stop in runs)
            return _metadata(BITSET, committed, since_ms, bits.to_bytes(size, "little"))
    return _metadata(RUNS, committed, since_ms, body)


def _metadata(mode: str, committed: int, since_ms: int, body: bytes | bytearray) -> str:
    header = _varint(committed) + _varint(since_ms)
    return PREFIX + mode + base64.b64encode(header + body).decode("ascii")


def _runs(finished: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive offsets as [start, end) ranges."""
    breaks = [index for index in range(1, len(finished)) if finished[index] != finished[index - 1] + 1]
    starts = [0, *breaks]
    ends = [*breaks, len(finished)]
    return [(finished[start], finished[end - 1] + 1) for start, end in zip(starts, ends, strict=True)]


def _varint(value: int) -> bytes:
    if value < 0x80:  # most run lengths: one byte
        return bytes((value,))
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position
