"""JSON decoding: an event is a JSON object; everything else is a precise DecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.decode.decoder import decode_json
from bridge.errors import DecodeError


def test_object_decodes() -> None:
    assert decode_json('{"a": [1, "ü"]}'.encode()) == {"a": [1, "ü"]}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe{}", "value is not valid UTF-8 (byte 0)"),
        (b"{not json", "invalid JSON: Expecting property name"),
        (b'{"a": 1', "invalid JSON: Expecting ',' delimiter"),
        (b"[1, 2]", "event is a JSON list, expected an object"),
        (b'"text"', "event is a JSON str, expected an object"),
        (b'{"a": NaN}', "invalid JSON: NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
    ],
)
def test_decode_errors(value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_json(value)
    assert info.value.reason.startswith(reason) and info.value.error_class == "decode"


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_decode_error(value: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_json(value), dict)
