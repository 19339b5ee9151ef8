"""The types the stages hand each other: a record as read from Kafka (and a fetch of
them), a command for Intilery, a partition's key and a commit's position. Imports nothing of ours
(an import-linter contract in pyproject.toml), so every stage can depend on it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch read: its records, and per partition it had news of, whether that
    news ended at the partition's end (nothing more to read for now)."""

    records: list[Record]
    ends: dict[TopicPartitionKey, bool]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int | None

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)

    @property
    def size(self) -> int:
        """Bytes it holds: key, value and headers (what ``max_buffered_bytes`` bounds)."""
        size = len(self.key or b"") + len(self.value or b"")
        for name, value in self.headers:
            size += len(name) + len(value or b"")
        return size

    @property
    def position(self) -> str:
        """Where it was read, as ``topic[partition]@offset`` (log lines, messages)."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def header_texts(self) -> dict[str, str]:
        """Its headers as text (what is not UTF-8 replaced; of a repeated name, the last)."""
        return {name: (value or b"").decode(errors="replace") for name, value in self.headers}

    def meta(self) -> dict[str, Any]:
        """The ``_kafka`` root every expression sees."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _text(self.key),
            "timestamp": self.timestamp_ms,
            "headers": {name: _text(value) for name, value in self.headers},
        }


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


@dataclass(frozen=True, slots=True)
class Once:
    """A command's place in the ledger of commands sent once: its ``key`` (the rule, the
    customer and the rendered dedupe key, hashed) and the ``window_s`` a copy of it is a
    duplicate for, once Intilery accepted it."""

    key: str
    window_s: float

    @classmethod
    def of(cls, rule: str, user_id: str, rendered: str, window_s: float) -> Once:
        """The key of a rule's command for a customer and a rendered dedupe key: hashed, so
        the rendered key's size does not matter and the ledger holds no customer data."""
        text = "\x1f".join((rule, user_id, rendered)).encode("utf-8", "surrogatepass")
        return cls(hashlib.sha256(text).hexdigest()[:40], window_s)


@dataclass(frozen=True, slots=True)
class Command:
    """One call to Intilery: ``POST .../v1/{action}`` with ``body``."""

    rule: str
    action: str
    body: dict[str, Any]
    payload: bytes = field(repr=False)
    event_ms: int | None = None  # the event's time: the rendered timestamp, else the record's
    max_age_s: float | None = None  # the rule's stale-event guard
    missing: tuple[str, ...] = ()  # its templates' fields the event does not have
    held: bool = False  # made but not to be sent: a field missing and the rule's on_missing: skip
    once: Once | None = None  # the rule's dedupe: sent once per customer and key within a window
    uncapped: bool = False  # the rule's ``caps: false``: no frequency cap counts it
    max_per_minute: int | None = None  # the rule's flood breaker

    def is_stale(self, now_ms: int) -> bool:
        return (
            self.max_age_s is not None
            and self.event_ms is not None
            and now_ms - self.event_ms > self.max_age_s * 1000
        )

    @property
    def name(self) -> str:
        return str(self.body.get("event", "-"))  # a command held back may have none

    def as_json_line(self) -> dict[str, Any]:
        return {"rule": self.rule, "action": self.action, "body": self.body}


@dataclass
class Position:
    topic: str
    partition: int
    offset: int
    metadata: str = ""  # the finished offsets after ``offset`` (bridge.kafka.offsetmap)
    left_out: int = 0  # finished offsets the metadata had no room for

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Withheld:
    """A command skipped, not sent, and not the record's failure: ``outcome`` says why
    (``stale``: its event is older than its rule's ``max_age``; ``incomplete``: a
    template's field is absent and its rule's ``on_missing`` is ``skip``), ``reason``
    names the rule's setting. The sender returns it in place of Intilery's answer."""

    outcome: str
    reason: str
