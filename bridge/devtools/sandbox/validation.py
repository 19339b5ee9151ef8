"""The request contract Intilery documents, as the sandbox enforces it.

Takes an action and a decoded body, gives None when Intilery would accept it,
else the message of its 400 answer.

The table below is written from Intilery's documentation (the API guide's
payloads and the original command table), on purpose apart from the bridge's
own check of what it sends (``bridge.rules.mapping.command_problem``): were the two
one rule, a mistake in it could never show in a test against the sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

ACTIONS = frozenset({"identify", "track", "page", "screen", "batch"})
MAX_REQUEST_BYTES = 1024 * 1024
MAX_CALL_BYTES = 32 * 1024  # a call inside a batch

# The fields each command needs (dotted: inside an object), the command in any case
# (the guide's example writes SEND_SMS, its table send_sms).
REQUIRED: dict[str, tuple[str, ...]] = {
    "send_email": ("userId", "assetId"),
    "send_sms": ("userId", "assetId"),
    "send_print": ("userId", "assetId"),
    "send_push": ("userId", "assetId"),
    "start_journey": ("userId", "properties.journeyIdToTrigger"),
    "identify": ("userId",),
}
IDENTITY = ("userId", "anonymousId")  # any other track event: at least one of them


def _empty(call: dict[str, Any], path: str) -> bool:
    value: Any = call
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value is None or (isinstance(value, str) and not value.strip())


def _contract_problem(call: dict[str, Any]) -> str | None:
    event = call.get("event")
    if not isinstance(event, str) or not event.strip():
        return "event must not be empty"
    required = REQUIRED.get(event.lower())
    if required is None:
        known = any(not _empty(call, field) for field in IDENTITY)
        return None if known else "userId or anonymousId must not be empty"
    return next((f"{field} must not be empty" for field in required if _empty(call, field)), None)


def _call_problem(action: str, call: Any) -> str | None:
    if not isinstance(call, dict):
        return "body must be a JSON object"
    event = call.get("event")
    if action == "identify" and event != "identify":
        return "event must be identify for the identify action"
    if action == "identify" and not isinstance(call.get("traits", {}), dict):
        return "traits must be an object"
    problem = _contract_problem(call)
    if problem:
        return problem
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
