"""One customer's story (``intilery-bridge trace --user ID``): every command the audit
topic says Intilery accepted for them, and every dead letter of theirs, in time order,
each naming the event it came from, the rule and rules version that made it, and its
trace. Read by time (``--since``, offsets looked up by time), by a consumer of its own:
no group joined, nothing committed."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

from bridge.errors import ConfigError
from bridge.kafka import auditentry
from bridge.kafka.consumer import asking_kafka
from bridge.kafka.deadletter import DeadLetterHeaders
from bridge.kafka.window import read_window, window_reader
from bridge.logs import printable
from bridge.model import Record
from bridge.ops.loading import Loaded
from bridge.ops.planning import plan
from bridge.ops.plural import counted
from bridge.ops.progress import Progress
from bridge.ops.requests import ReplayRequest
from bridge.tracing import parent_of


@dataclass
class Story:
    user: str
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def told(self) -> Story:
        """In time order, a command sent again for the same record and rule marked
        ``repeat`` (the second and later times)."""
        self.entries.sort(key=lambda e: str(_when(e) or ""))
        seen: set[str] = set()
        for entry in self.entries:
            source = entry.get("source") or {}
            fields = [
                entry.get("kind"),
                entry.get("rule"),
                *(source.get(f) for f in ("topic", "partition", "offset")),
            ]
            key = json.dumps(fields, default=str)  # another writer's entry may hold anything
            entry["repeat"] = key in seen
            seen.add(key)
        return self

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "entries": self.entries}

    def report(self, out: TextIO) -> None:
        print(printable(f"{self.user}: {counted(len(self.entries), 'entry', 'entries')}"), file=out)
        for entry in self.entries:
            print(printable(_line(entry)), file=out)  # entries are other writers' too


def _when(entry: dict[str, Any]) -> Any:
    """When the bridge did it: sent, skipped or discarded (a dead letter: when it was written)."""
    return entry.get("sent_at") or entry.get("at") or (entry.get("source") or {}).get("timestamp")


def _line(entry: dict[str, Any]) -> str:
    source = entry.get("source") or {}
    origin = f"{source.get('topic')}[{source.get('partition')}]@{source.get('offset')}"
    rules = f"rule {entry.get('rule')} ({entry.get('rules_version') or '-'})"
    event = f"from {origin} (event {entry.get('event_time') or source.get('timestamp')})"  # as sent
    trace = f"trace {entry.get('trace_id') or '-'}"
    kind = entry["kind"]
    if kind in ("dead_letter", "discarded"):
        done = "dead-lettered" if kind == "dead_letter" else "dead letter discarded,"
        failed = f"{done} {entry.get('error_class')}: {entry.get('reason')}"
        return f"{_when(entry)}  {failed}  {rules}  {event}  {trace}"
    target = entry.get("assetId") or entry.get("journeyId") or "-"
    if kind == auditentry.DEDUPLICATED:
        first = entry.get("first_eventId") or "-"
        skipped = f"{entry.get('command')} {target}  not sent (deduplicated: first eventId {first})"
        return f"{_when(entry)}  {skipped}  {rules}  {event}  {trace}"
    if kind != "delivered":  # withheld: stale, incomplete
        skipped = f"{entry.get('command')} {target}  not sent ({kind}): {entry.get('reason')}"
        return f"{_when(entry)}  {skipped}  {rules}  {event}  {trace}"
    marks = [mark for mark, on in (("resent", entry.get("resent")), ("REPEAT", entry.get("repeat"))) if on]
    shown = f"{entry.get('command')} {target}  {rules}  {event}  status {entry.get('status')}  {trace}"
    return f"{entry.get('sent_at')}  {shown}" + (f"  [{', '.join(marks)}]" if marks else "")


def customer_story(loaded: Loaded, user: str, since: str | None) -> Story:
    """``user``'s entries in the audit topic (and the dead-letter topic) since ``since``
    (None: from the beginning)."""
    delivery = loaded.config.delivery
    if delivery.audit_topic is None:
        raise ConfigError(["trace: delivery.audit_topic is not set: the bridge keeps no story to read"])
    group = f"{loaded.config.kafka['group.id']}-trace-{uuid.uuid4().hex[:8]}"  # named, never joined
    consumer = window_reader(loaded.config.kafka, group)
    story = Story(user)
    topics = [(delivery.audit_topic, _delivered), (delivery.dead_letter_topic, _dead_letter)]
    try:
        with asking_kafka("reading the audit topic"):
            windows = [
                (plan(consumer, topic, group, False, _since(topic, since)), read)
                for topic, read in topics
                if topic is not None
            ]
            progress = Progress("trace", sum(w.total for w, _ in windows), sys.stderr, made="entries")
            done = 0
            for window, read in windows:
                consumer.assign(window.assignment())
                for record in read_window(consumer, window):
                    if (entry := read(record, user)) is not None:
                        story.add(entry)
                    done += 1
                    progress.update(done, len(story.entries))
            progress.close()
    finally:
        consumer.close()
    return story.told()


def _since(topic: str, since: str | None) -> ReplayRequest:
    """The window of ``topic`` from ``since`` (None: from its beginning) to its end now."""
    return ReplayRequest(topic=topic, from_time=since, from_beginning=since is None)


def _delivered(record: Record, user: str) -> dict[str, Any] | None:
    if record.key is not None and record.key != user.encode():
        return None  # keyed by the userId: another customer's
    entry = auditentry.parse(record.value)
    if entry is None or str(entry.get("userId")) != user:
        return None
    if not isinstance(entry.get("source"), dict):
        entry["source"] = {}  # another writer's entry: told without its origin, never a crash
    return {**entry, "kind": auditentry.outcome(entry)}


def _dead_letter(record: Record, user: str) -> dict[str, Any] | None:
    headers = DeadLetterHeaders.of(record)
    named = headers.user  # the bridge knew the customer: a command was made
    if named != user and (named is not None or record.key != user.encode()):
        return None
    trace = parent_of(record.headers)
    return {
        "kind": "dead_letter",
        "userId": user,
        "rule": headers.rule,
        "rules_version": headers.rules_version,
        "error_class": headers.error_class,
        "reason": headers.reason,
        "status": headers.status,
        "source": {
            "topic": headers.source_topic,
            "partition": headers.source_partition,
            "offset": headers.source_offset,
            "timestamp": auditentry.event_time(record.timestamp_ms),
        },
        "trace_id": headers.trace_id or (trace.trace_id if trace else None),
    }
