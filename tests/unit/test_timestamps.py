"""Timestamp normalisation to Intilery's ISO-8601 UTC form with milliseconds."""

from __future__ import annotations

import pytest

from bridge.timestamps import from_epoch_ms, normalise


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-11-18T13:30:12.984Z", "2019-11-18T13:30:12.984Z"),
        ("2019-11-18T14:30:12.984+01:00", "2019-11-18T13:30:12.984Z"),
        ("2019-11-18T08:30:12-05:00", "2019-11-18T13:30:12.000Z"),
        ("2019-11-18T13:30:12.984123Z", "2019-11-18T13:30:12.984Z"),
        ("2019-11-18T13:30:12", "2019-11-18T13:30:12.000Z"),
        ("2019-11-18", "2019-11-18T00:00:00.000Z"),
        (1574083812, "2019-11-18T13:30:12.000Z"),
        (1574083812.5, "2019-11-18T13:30:12.500Z"),
        (1574083812984, "2019-11-18T13:30:12.984Z"),
        ("1574083812984", "2019-11-18T13:30:12.984Z"),
        (" 1574083812 ", "2019-11-18T13:30:12.000Z"),
    ],
)
def test_normalise(value: object, expected: str) -> None:
    assert normalise(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "", True, [], {"a": 1}, "2019-13-45T00:00:00Z", 10**20])
def test_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        normalise(value)


def test_from_epoch_ms() -> None:
    assert from_epoch_ms(0) == "1970-01-01T00:00:00.000Z"
    assert from_epoch_ms(1574083812984) == "2019-11-18T13:30:12.984Z"


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01", "1" * 401, int("1" * 401), 1e308, -1e20],
)
def test_a_time_past_either_end_is_a_value_error_not_an_overflow(value: object) -> None:
    """Each raised OverflowError out of the record path: map and test printed a traceback,
    run exited 1 on the same record at every restart."""
    with pytest.raises(ValueError, match="out of range"):
        normalise(value)


def test_a_record_time_past_the_end_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        from_epoch_ms(2**62)
