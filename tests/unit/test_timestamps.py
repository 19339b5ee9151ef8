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
