"""What became of each record and command, in one place: every outcome updates its
count (``bridge_summary``, the replay summary), its metric and its log line together.

Outcomes of a record: consumed, then one of skipped (no rule matched), already
finished (the last commit's map names it), not selected (a redrive's filters),
read again (a rewound partition), dead-lettered, failed (no dead-letter topic:
the bridge stops) or failing again (redrive). Of a command: delivered, already sent,
stale or incomplete (skipped), retried; and the fields its templates did not find.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from bridge.errors import AuthError, CappedError, DeliveryError, RecordError, SetupError
from bridge.intilery.client import Delivered
from bridge.metrics import Metrics
from bridge.model import Command, Record, Withheld
from bridge.rules.commands import KNOWN_EVENTS
from bridge.tracing import Span, record_span

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when spans are exported
    from bridge.spans import Spans

log = structlog.get_logger("bridge")

COUNTS = (
    "consumed",
    "delivered",
    "dead_lettered",
    "skipped",
    "stale",
    "incomplete",
    "retries",
    "already_finished",
    "already_sent",
    "read_again",
)
NO_RULE = "-"  # label value where no rule or command applies (a record no rule matched)
NO_COMMAND = "none"  # the command label of a record dead-lettered before a command was made


def record_fields(record: Record, span: Span | None = None) -> dict[str, Any]:
    """A record's place (and its trace), for log lines."""
    place = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    return place if span is None else {**place, "trace_id": span.trace_id, "span_id": span.span_id}


def describe(command: Command) -> dict[str, Any]:
    """A command for log lines: its rule, its event and ids only (no customer data)."""
    body = command.body
    return {
        "rule": command.rule,
        "command": body.get("event"),
        "userId": body.get("userId"),
        "assetId": body.get("assetId"),
    }


def command_label(command: Command) -> str:
    """The ``command`` label: a known command, else ``other`` (a rule's ``event:`` template
    renders whatever the event holds, and each value would be a series of its own)."""
    return command.name if command.name in KNOWN_EVENTS else "other"


def failure_fields(
    record: Record,
    error: RecordError,
    command: Command | None = None,
    rules_version: str | None = None,
    span: Span | None = None,
) -> dict[str, Any]:
    """The log fields of a record or command that failed for good."""
    return {
        **record_fields(record, span),
        **(describe(command) if command else {}),
        "rule": error.rule,
        "error_class": error.error_class,
        "reason": error.reason,
        "status": error.status,
        **({"rules_version": rules_version} if rules_version else {}),
    }


class CommandOutcomes:
    """Counts, metrics and log lines of what became of each command."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
        self._missing_logged: set[tuple[str, str]] = set()
        self._held_logged: dict[str, float] = {}  # rule -> when its last command_held was logged
        self.clock = time.monotonic  # times those lines (a test's own clock)

    def delivered(
        self,
        command: Command,
        record: Record,
        delivered: Delivered,
        rules_version: str,
        span: Span | None = None,
    ) -> None:
        """``rules_version``: the version of the rules that mapped it; ``span``: its record's."""
        self.counts["delivered"] += 1
        self.metrics.commands(command.rule, command_label(command), "delivered").inc()
        if command.event_ms is not None:
            self.metrics.event_to_ack.observe(max(0.0, time.time() - command.event_ms / 1000))
        log.info(
            "command_delivered",
            **describe(command),
            **record_fields(record, span),
            attempt=delivered.attempt,
            status=delivered.status,
            latency_ms=round(delivered.latency_ms, 1),
            eventId=delivered.event_id,
            rules_version=rules_version,
        )

    def already_sent(self, command: Command, record: Record, event_id: str, span: Span | None = None) -> None:
        """Not sent again: the audit topic shows Intilery accepted it (``event_id``) after the
        partition's last commit (:mod:`bridge.kafka.sentlog`)."""
        self.counts["already_sent"] += 1
        self.metrics.commands(command.rule, command_label(command), "already_sent").inc()
        log.info(
            "command_already_sent",
            **describe(command),
            **record_fields(record, span),
            eventId=event_id or None,
        )

    def deduplicated(
        self, command: Command, record: Record, first_event_id: str | None, span: Span | None = None
    ) -> None:
        """Not sent: a copy of a command Intilery accepted within its rule's dedupe window
        (``first_event_id``: that one's eventId, when the ledger knows it)."""
        self.counts["deduplicated"] += 1
        self.metrics.commands(command.rule, command_label(command), "deduplicated").inc()
        self.metrics.deduplicated(command.rule).inc()
        log.info(
            "command_deduplicated",
            **describe(command),
            **record_fields(record, span),
            first_eventId=first_event_id,
        )

    def held_back(
        self,
        command: Command,
        record: Record,
        error: RecordError,
        rules_version: str,
        span: Span | None = None,
    ) -> None:
        """Over a frequency cap (``capped``) or its rule's flood breaker (``held``): the command
        alone goes to the dead-letter topic (its record's others go on). A flood's lines are
        logged once a second at most per rule (each counted)."""
        self.counts[error.error_class] += 1
        self.metrics.dead_letters(error.error_class).inc()
        self.metrics.commands(command.rule, command_label(command), error.error_class).inc()
        fields = {**describe(command), **record_fields(record, span), "reason": error.reason}
        if isinstance(error, CappedError):
            self.metrics.capped(error.cap).inc()
            log.warning("command_capped", **fields, cap=error.cap, rules_version=rules_version)
            return
        self.metrics.held(command.rule).inc()
        now = self.clock()
        if now - self._held_logged.get(command.rule, -1.0) >= 1.0:
            self._held_logged[command.rule] = now
            log.warning("command_held", **fields, rules_version=rules_version)

    def withheld(self, command: Command, record: Record, skipped: Withheld, span: Span | None = None) -> None:
        """Skipped, not sent: ``stale`` (past its rule's max_age) or ``incomplete`` (a field
        absent, its rule's on_missing: skip)."""
        self.counts[skipped.outcome] += 1
        self.metrics.commands(command.rule, command_label(command), skipped.outcome).inc()
        log.info(
            f"command_{skipped.outcome}",
            **describe(command),
            **record_fields(record, span),
            reason=skipped.reason,
        )

    def fields_missing(self, rule: str, fields: tuple[str, ...], on_missing: str) -> None:
        """A command's templates named ``fields`` its event did not have: counted per rule and
        field, logged once per rule and field (the expressions only: no customer data)."""
        for field in fields:
            self.metrics.rules.template_missing.counts[rule, field] += 1
            if (rule, field) not in self._missing_logged:
                self._missing_logged.add((rule, field))
                log.warning("template_field_missing", rule=rule, field=field, on_missing=on_missing)

    def retried(
        self, command: Command, attempt: int, error: DeliveryError, delay: float, context: Mapping[str, Any]
    ) -> None:
        self.counts["retries"] += 1
        self.metrics.commands(command.rule, command_label(command), "retried").inc()
        setup = isinstance(error, SetupError)
        event = "intilery_auth_failed" if isinstance(error, AuthError) else "intilery_redirected"
        (log.error if setup else log.warning)(
            event if setup else "command_retry",
            **describe(command),
            **context,
            attempt=attempt,
            status=error.status,
            reason=error.reason,
            retry_in_ms=round(delay * 1000),
        )


class Outcomes(CommandOutcomes):
    """Counts, metrics and log lines of what the bridge did with each record (and, by
    :class:`CommandOutcomes`, with each command)."""

    def __init__(self, metrics: Metrics, spans: Spans | None = None, sample_ratio: float = 1.0) -> None:
        super().__init__(metrics)
        self.spans = spans
        self.sample_ratio = sample_ratio

    def span_of(self, record: Record) -> Span:
        """The record's span: its ``traceparent``'s child, else a new trace (sampled at ``sample_ratio``)."""
        return record_span(record.headers, self.sample_ratio)

    # --- records ----------------------------------------------------------------

    def consumed(self, record: Record) -> None:
        self.counts["consumed"] += 1
        self.metrics.records(record.topic).inc()

    def not_selected(self) -> None:
        self.counts["not_selected"] += 1  # a redrive's filters leave it for another run

    def already_finished(self, record: Record) -> None:
        self.counts["already_finished"] += 1
        self.metrics.already_finished.inc()
        log.debug("record_already_finished", **record_fields(record))

    def read_again(self, record: Record, last_read: int | None, first: bool) -> None:
        if first:
            log.warning("partition_rewound", **record_fields(record), last_read=last_read)
        self.counts["read_again"] += 1

    def finished(self, record: Record, span: Span, outcome: str) -> None:
        """The record finished (``delivered``, ``skipped``, ``dead_lettered``): its span ends."""
        if self.spans is not None:
            self.spans.record(span, time.time_ns(), record.topic, record.partition, record.offset, outcome)

    def skipped(self, record: Record, span: Span | None = None) -> None:
        self.counts["skipped"] += 1
        self.metrics.commands(NO_RULE, NO_RULE, "skipped").inc()
        log.debug("record_skipped", **record_fields(record, span))

    def dead_lettered(
        self,
        record: Record,
        error: RecordError,
        command: Command | None,
        rules_version: str,
        span: Span | None = None,
    ) -> None:
        self.counts["dead_lettered"] += 1
        self.metrics.dead_letters(error.error_class).inc()
        rule = error.rule or NO_COMMAND
        name = command_label(command) if command else NO_COMMAND
        self.metrics.commands(rule, name, "dead_lettered").inc()
        log.warning("command_dead_lettered", **failure_fields(record, error, command, rules_version, span))

    def failed(
        self,
        record: Record,
        error: RecordError,
        command: Command | None,
        rules_version: str,
        span: Span | None = None,
    ) -> None:
        log.error("command_failed", **failure_fields(record, error, command, rules_version, span))

    def failing_again(
        self,
        record: Record,
        error: RecordError,
        command: Command | None,
        at: str,
        rules_version: str,
        span: Span | None = None,
    ) -> None:
        self.counts["failing_again"] += 1
        fields = failure_fields(record, error, command, rules_version, span)
        log.warning("redrive_failed_again", **fields, dead_letter=at)

    def rules_in_force(self, version: str) -> None:
        """The rules mapping the records read from now on (at start-up, on a reload)."""
        self.metrics.rules.info.clear()
        self.metrics.rules.info.labels(version).set(1)

    def summary(self, **state: Any) -> None:
        log.info("bridge_summary", **self.counts, **state)

    def stopped(
        self, abandoned: int, failure: str | None, committed: bool, read_again: int, to_send: int
    ) -> None:
        """The last line: what this run did, and what the partitions' next owner will read
        again (from the last commit on) and send (of those, what was not finished here)."""
        log.info(
            "bridge_stopped",
            delivered=self.counts["delivered"],
            dead_lettered=self.counts["dead_lettered"],
            read_again=read_again,
            to_send=to_send,
            final_commit="ok" if committed else "failed",
            abandoned_lanes=abandoned,
            failure=failure,
        )
