"""The request contract Intilery documents, as the sandbox enforces it.

Takes an action and a decoded body, gives None when Intilery would accept it,
else the message of its 400 answer.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..mapping import MAX_CALL_BYTES, command_problem

ACTIONS = frozenset({"identify", "track", "page", "screen", "batch"})
MAX_REQUEST_BYTES = 1024 * 1024


def _call_problem(action: str, call: Any) -> str | None:
    if not isinstance(call, dict):
        return "body must be a JSON object"
    event = call.get("event")
    if action == "identify" and event != "identify":
        return "event must be identify for the identify action"
    if action == "identify" and not isinstance(call.get("traits", {}), dict):
        return "traits must be an object"
    problem = command_problem(call, literal=False)
    if problem:
        return f"{problem[0]} must not be empty" if "required" in problem[1] else problem[1]
    if "timestamp" in call and not _is_iso_utc(call["timestamp"]):
        return "timestamp must be an ISO-8601 UTC time"
    return None


def _is_iso_utc(value: Any) -> bool:
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def validate(action: str, body: Any) -> str | None:
    if action != "batch":
        return _call_problem(action, body)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list) or not body["batch"]:
        return "batch must be a non-empty list of calls"
    for index, call in enumerate(body["batch"]):
        size = len(json.dumps(call, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_CALL_BYTES:
            return f"batch[{index}] is {size} bytes, over 32 KB"
        inner = "identify" if isinstance(call, dict) and call.get("event") == "identify" else "track"
        problem = _call_problem(inner, call)
        if problem:
            return f"batch[{index}]: {problem}"
    return None
