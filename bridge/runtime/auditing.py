"""The record path's side of the audit topic (``delivery.audit_topic``): an entry for
each command it decided on (:mod:`bridge.kafka.auditentry`, the format), and whether the
bridge had sent it before, as far as it can tell. Written by
:class:`~bridge.kafka.audit.AuditLog`; read back by ``intilery-bridge trace``."""

from __future__ import annotations

from typing import Any

from bridge.config import BridgeConfig
from bridge.intilery.client import Delivered
from bridge.kafka import auditentry as entry
from bridge.kafka.deadletter import DeadLetterHeaders
from bridge.kafka.window import Window
from bridge.model import Command, Record, Withheld
from bridge.runtime.inprogress import RecordInProgress
from bridge.runtime.ports import AuditSink


class Audit:
    """The record path's side of the audit topic: an entry per command Intilery accepted
    (with its body when ``include_body``), naming the consumer ``group``. ``window``:
    replay's or redrive's, named in each entry. ``skip_sent``: a command the audit topic
    shows was sent after its partition's last commit is not sent again (else it is, its
    entry marked ``resent``)."""

    def __init__(
        self,
        sink: AuditSink,
        include_body: bool,
        group: str,
        window: Window | None = None,
        skip_sent: bool = True,
    ) -> None:
        self.sink = sink
        self.include_body = include_body
        self.group = group
        self.window = window
        self.skip_sent = skip_sent

    @classmethod
    def configured(cls, sink: AuditSink | None, config: BridgeConfig, window: Window | None) -> Audit | None:
        """The audit of ``config`` (None without an audit topic's ``sink``)."""
        if sink is None:
            return None
        delivery, group = config.delivery, str(config.kafka["group.id"])
        return cls(sink, delivery.audit_include_body, group, window, delivery.skip_audited)

    def sent_earlier(self, work: RecordInProgress) -> dict[str, str]:
        """The rules whose commands of ``work``'s record are not to be sent again: sent after
        its partition's last commit, as the audit topic shows (with their eventIds)."""
        return work.state.sent_earlier(work.record.offset) if self.skip_sent else {}

    def delivered(
        self,
        work: RecordInProgress,
        command: Command,
        delivered: Delivered,
        index: int,
    ) -> None:
        """Write the entry of ``work``'s command number ``index``; until it is written the
        record waits (it holds a part of the record's completion)."""
        resent = sent_before(work.record, self.window, work.commands or [], index) or (
            command.rule in work.state.sent_earlier(work.record.offset)
        )
        fields = entry.delivered(
            command,
            work.origin,
            event_id=delivered.event_id,
            status=delivered.status,
            attempt=delivered.attempt,
            latency_ms=delivered.latency_ms,
            rules_version=work.mapper.version,
            trace_id=work.span.trace_id,
            resent=resent,
            window=self.window,
        )
        self._write(work, fields, command.body if self.include_body else None)

    def withheld(self, work: RecordInProgress, command: Command, skipped: Withheld) -> None:
        """Write the entry of ``work``'s command skipped, not sent (``stale``, ``incomplete``),
        so ``trace`` tells it beside those sent; the record waits for it as for the others."""
        fields = entry.withheld(
            command,
            work.origin,
            outcome=skipped.outcome,
            reason=skipped.reason,
            rules_version=work.mapper.version,
            trace_id=work.span.trace_id,
            window=self.window,
        )
        self._write(work, fields, None)

    def deduplicated(self, work: RecordInProgress, command: Command, first_event_id: str | None) -> None:
        """Write the entry of ``work``'s command not sent as a duplicate, so ``trace`` tells it."""
        fields = entry.deduplicated(
            command,
            work.origin,
            first_event_id=first_event_id,
            rules_version=work.mapper.version,
            trace_id=work.span.trace_id,
            window=self.window,
        )
        self._write(work, fields, None)

    def _write(self, work: RecordInProgress, fields: dict[str, Any], body: dict[str, Any] | None) -> None:
        fields["group"] = self.group
        self.sink.send(fields, body, work.hold())


def sent_before(record: Record, window: Window | None, commands: list[Command], index: int) -> bool:
    """Whether the record's command number ``index`` was sent before, as far as a replay or
    redrive can tell: every command a replay sends was; a redriven record's commands before
    the one Intilery rejected were (its record's commands go in order, and stop at a
    rejection). (After a crash: see :meth:`Audit.delivered`.)"""
    if window is None:
        return False
    if not window.redrive:
        return True
    headers = DeadLetterHeaders.of(record)
    if headers.error_class != "rejected":
        return False  # dead-lettered before anything was sent: decoding, mapping
    failed = next((i for i, c in enumerate(commands) if c.rule == headers.rule), 0)
    return index < failed
