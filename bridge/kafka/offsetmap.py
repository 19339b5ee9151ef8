"""The finished offsets above a committed one, carried in the commit's metadata.

A commit's offset is the first record of its partition not yet finished; records
after it may be finished already (commands of other keys run concurrently). The
commit's metadata string names them, so that whoever reads the partition next
skips them instead of sending their commands a second time.

The string is ``ib1`` (ours, format 1), then ``b`` (a bitset) or ``r`` (run
lengths), whichever is shorter, then base64 of: the committed offset as a varint
(a map is read only against the offset it was written with), and

- ``b``: bit ``i`` (least significant first within each byte) set when offset
  ``committed + i`` is finished;
- ``r``: varint run lengths from the committed offset on, alternating: not
  finished, finished, not finished, ...

Kafka bounds the metadata by the broker's ``offset.metadata.max.bytes`` (4,096
by default); when the map does not fit, the lowest finished offsets that fit are
kept and the rest counted as overflow (they are sent again after a restart, as
they would be without a map). Anything else (another tool's metadata, a newer
format, a corrupt string) reads as no map at all: never a skip.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

PREFIX = "ib1"
BITSET, RUNS = "b", "r"
MAX_BYTES = 4096
MAX_NAMED = 1_000_000  # more finished offsets than any bridge holds unfinished: not a map of ours


def encode(committed: int, finished: Sequence[int], limit: int = MAX_BYTES) -> tuple[str, int]:
    """The metadata naming ``finished`` (ascending, each at or after ``committed``),
    at most ``limit`` bytes; and how many of the highest offsets were left out."""
    if not finished:
        return "", 0
    metadata = _smallest(committed, finished)
    if len(metadata) <= limit:
        return metadata, 0
    low, high = 0, len(finished)  # the most offsets that fit: sizes grow with the count kept
    while low < high:
        middle = (low + high + 1) // 2
        if len(_smallest(committed, finished[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return _smallest(committed, finished[:low]) if low else "", len(finished) - low


def decode(metadata: str, committed: int) -> set[int] | None:
    """The finished offsets named in ``metadata`` written for ``committed``: an empty
    set for no metadata, None for metadata that is not a map of ours for that offset."""
    if not metadata:
        return set()
    if not metadata.startswith(PREFIX) or len(metadata) < len(PREFIX) + 1:
        return None
    mode, text = metadata[len(PREFIX)], metadata[len(PREFIX) + 1 :]
    try:
        payload = base64.b64decode(text.encode("ascii"), validate=True)
        base, position = _read_varint(payload, 0)
        if base != committed:
            return None
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
    except (ValueError, binascii.Error, UnicodeEncodeError, IndexError):
        return None
    return None


def _smallest(committed: int, finished: Sequence[int]) -> str:
    if not finished:
        return ""
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
            return _metadata(BITSET, committed, bits.to_bytes(size, "little"))
    return _metadata(RUNS, committed, body)


def _metadata(mode: str, committed: int, body: bytes | bytearray) -> str:
    return PREFIX + mode + base64.b64encode(_varint(committed) + body).decode("ascii")


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
