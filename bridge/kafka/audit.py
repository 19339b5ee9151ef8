"""The audit topic's writer (``delivery.audit_topic``): one JSON record per command
Intilery accepted, keyed by its userId, acknowledged before the command's record may be
committed (as a dead letter is). An entry refused for its content is written again at
once without the command's body (``delivery.audit_include_body``), its ``body_omitted``
saying so; refused for availability, it is retried and holds the commit back
(:class:`~bridge.kafka.writer.TopicWriter`): a full or missing audit topic never loses an
entry silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.kafka import auditentry
from bridge.kafka.writer import CONTENT, CONTENT_ERRORS, Omitted, TopicWriter

log = structlog.get_logger("bridge.kafka.audit")

NO_BODY: Omitted = frozenset({"body"})


@dataclass(frozen=True, slots=True)
class Entry:
    fields: dict[str, Any]  # bridge.kafka.auditentry
    body: dict[str, Any] | None  # the command's body, with delivery.audit_include_body


class AuditLog(TopicWriter[Entry]):
    kind, what = "audit", "the audit topic"

    def send(self, fields: dict[str, Any], body: dict[str, Any] | None, on_done: Callable[[], None]) -> None:
        """Write an entry (with the command's ``body`` when given); ``on_done`` once the
        broker has it."""
        self._write(Entry(fields, body), on_done)

    def _message(self, entry: Entry, form: Omitted) -> dict[str, Any]:
        key, value = auditentry.encode(entry.fields, entry.body, "body" in form)
        return {"key": key, "value": value}

    def _smaller(self, form: Omitted, code: int | None) -> Omitted | None:
        if (code in CONTENT_ERRORS or code == CONTENT) and "body" not in form:
            return form | NO_BODY
        return None

    def _reduced(self, entry: Entry, form: Omitted, smaller: Omitted, reason: str) -> None:
        log.warning("audit_body_omitted", **self._where(entry), error=reason)

    def _where(self, entry: Entry) -> dict[str, Any]:
        source = entry.fields.get("source") or {}
        return {
            "source_topic": source.get("topic"),
            "partition": source.get("partition"),
            "offset": source.get("offset"),
        }
