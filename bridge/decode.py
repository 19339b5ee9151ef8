"""Record bytes → event.

Takes a Kafka record value, gives the decoded event (a JSON object as a dict),
raises :class:`~bridge.errors.DecodeError` with a precise reason.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import DecodeError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise DecodeError("record has no value (tombstone)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not valid UTF-8 (byte {exc.start})") from exc
    try:
        event = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except ValueError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("invalid JSON: nested too deeply") from exc
    if not isinstance(event, dict):
        raise DecodeError(f"event is a JSON {type(event).__name__}, expected an object")
    return event
