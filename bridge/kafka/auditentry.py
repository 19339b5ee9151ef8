"""The audit entry: one format, built, encoded and read back here only.

An entry is a JSON object, keyed by its ``userId``, one per command the bridge decided
on: ``outcome`` ``delivered`` (Intilery accepted it: ``eventId``, ``status``,
``attempt``, ``latency_ms``, ``sent_at``, ``resent``), ``stale`` or ``incomplete``
(skipped, not sent: ``reason``, ``at``), ``deduplicated`` (not sent: a copy of one
accepted within its rule's dedupe window, ``first_eventId`` when known, ``at``), or
``discarded`` (a dead letter acknowledged by ``redrive --discard``: its ``error_class``,
``reason``, ``dead_letter``, ``at``). Each
says which rule and rules made it (``rule``, ``rules_version``), the customer and target
(``userId``, ``assetId`` or ``journeyId``), the record it came from (``source``), the
event time sent (``event_time``), its trace, the ``group`` and, from a replay or
redrive, its ``window``. ``v`` is the format's version (:data:`VERSION`); an entry
without ``v`` or ``outcome`` is of an older bridge, and reads as ``delivered``.

Written by :class:`~bridge.kafka.audit.AuditLog`, looked up after a crash by
:mod:`bridge.kafka.sentlog`, told by ``trace`` (:mod:`bridge.ops.story`). Entries are
outside bytes when read: another writer may share the topic, so :func:`parse` gives an
object or None, never an exception.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bridge import timestamps
from bridge.kafka.deadletter import DeadLetterHeaders
from bridge.kafka.window import Window
from bridge.logs import redact
from bridge.model import Command, Record

VERSION = 1
DELIVERED = "delivered"
DEDUPLICATED = "deduplicated"


def delivered(
    command: Command,
    origin: Record,
    *,
    event_id: str | None,
    status: int,
    attempt: int,
    latency_ms: float,
    rules_version: str,
    trace_id: str,
    resent: bool,
    window: Window | None,
) -> dict[str, Any]:
    """The entry of ``command`` (from the record ``origin``), once Intilery took it; ids
    and outcome only: the command's merge fields are its body's, written apart."""
    entry: dict[str, Any] = {"v": VERSION, "eventId": event_id, "outcome": DELIVERED}
    entry |= _command(command, origin, rules_version, trace_id, window)
    entry |= {
        "status": status,
        "attempt": attempt,
        "latency_ms": round(latency_ms, 1),
        "sent_at": now_text(),
        "resent": resent,
    }
    return entry


def withheld(
    command: Command,
    origin: Record,
    *,
    outcome: str,
    reason: str,
    rules_version: str,
    trace_id: str,
    window: Window | None,
) -> dict[str, Any]:
    """The entry of ``command`` skipped rather than sent (``stale``, ``incomplete``)."""
    entry: dict[str, Any] = {"v": VERSION, "outcome": outcome}
    entry |= _command(command, origin, rules_version, trace_id, window)
    return entry | {"reason": reason, "at": now_text()}


def deduplicated(
    command: Command,
    origin: Record,
    *,
    first_event_id: str | None,
    rules_version: str,
    trace_id: str,
    window: Window | None,
) -> dict[str, Any]:
    """The entry of ``command`` not sent: a copy of one Intilery accepted within its rule's
    dedupe window (``first_event_id``: that one's eventId, when known)."""
    entry: dict[str, Any] = {"v": VERSION, "outcome": DEDUPLICATED}
    entry |= _command(command, origin, rules_version, trace_id, window)
    return entry | {"first_eventId": first_event_id, "at": now_text()}


def discarded(dead_letter: Record, origin: Record, window: Window, group: str) -> dict[str, Any]:
    """The entry of a dead letter acknowledged without being sent: ids, its class and
    reason, the record it was made from and where it was in the dead-letter topic."""
    headers = DeadLetterHeaders.of(dead_letter)
    return {
        "v": VERSION,
        "outcome": "discarded",
        "rule": headers.rule,
        "rules_version": headers.rules_version,
        "userId": headers.user,
        "error_class": headers.error_class,
        "reason": redact(headers.reason or ""),
        "source": source(origin),
        "dead_letter": {
            "topic": dead_letter.topic,
            "partition": dead_letter.partition,
            "offset": dead_letter.offset,
        },
        "trace_id": headers.trace_id,
        "at": now_text(),
        "group": group,
        "window": window.described(),
    }


def _command(
    command: Command, origin: Record, rules_version: str, trace_id: str, window: Window | None
) -> dict[str, Any]:
    """What every entry of a command says, however it went."""
    body = command.body
    entry: dict[str, Any] = {
        "rule": command.rule,
        "rules_version": rules_version,
        "command": body.get("event"),
        "userId": body.get("userId"),
    }
    properties = body.get("properties")
    if "assetId" in body:
        entry["assetId"] = body["assetId"]
    elif body.get("event") == "start_journey" and isinstance(properties, dict):
        entry["journeyId"] = properties.get("journeyIdToTrigger")
    entry["source"] = source(origin)
    entry["event_time"] = body.get("timestamp")  # as sent: the rule's timestamp, else the record's
    entry["trace_id"] = trace_id
    if command.once is not None:
        entry["once"] = command.once.key  # the ledger's key (a hash), for a ledger rebuilt from here
    if window is not None:
        entry["window"] = window.described()
    return entry


def source(origin: Record) -> dict[str, Any]:
    """The record an entry is of, as entries name it."""
    return {
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "timestamp": event_time(origin.timestamp_ms),
    }


def event_time(ms: int | None) -> str | int | None:
    """A record's time as UTC text; a time no calendar holds (a producer may set any) as its
    epoch milliseconds."""
    if ms is None:
        return None
    try:
        return timestamps.from_epoch_ms(ms)
    except ValueError:
        return ms


def now_text() -> str:
    return timestamps.from_epoch_ms(int(time.time() * 1000))


def encode(entry: dict[str, Any], body: dict[str, Any] | None, omit_body: bool) -> tuple[bytes | None, bytes]:
    """The entry's key (its userId) and value, with the command's ``body`` when given
    (``omit_body``: marked ``body_omitted`` instead, for a topic that refused its size)."""
    value = dict(entry)
    if body is not None:
        value |= {"body_omitted": True} if omit_body else {"body": body}
    user = entry.get("userId")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    # A lone surrogate (valid in JSON events, so in a userId) can only be in a string:
    # escaped, it is the JSON escape that reads back as the same string.
    key = None if user is None else str(user).encode("utf-8", "backslashreplace")
    return key, text.encode("utf-8", "backslashreplace")


def parse(value: bytes | None) -> dict[str, Any] | None:
    """An entry read back: the JSON object, or None for anything else (not JSON, not
    UTF-8, nested past the parser's depth, not an object)."""
    try:
        entry = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def outcome(entry: dict[str, Any]) -> str:
    """The entry's outcome; an older bridge's entry, with none, was of a command sent."""
    found = entry.get("outcome", DELIVERED)
    return found if isinstance(found, str) else DELIVERED
