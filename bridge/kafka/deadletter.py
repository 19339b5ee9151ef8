"""The dead-letter producer for records that can never be delivered.

Takes a :class:`~bridge.model.Record` and the :class:`~bridge.errors.RecordError`
that condemned it; writes the record to the dead-letter topic with its key,
value and headers unchanged plus ``x-bridge-*`` headers, and calls ``on_done``
only once the broker has acknowledged the write.

A dead letter always encodes and always fits: the reason is cut at
:data:`REASON_LIMIT` characters (its full length noted), every header value is UTF-8
with what is not valid escaped, a source header named ``x-bridge-*`` is kept as
``x-source-x-bridge-*`` (every ``x-bridge-*`` header of a dead letter is the bridge's), and
a write refused for its content (too large, an invalid record or timestamp) is retried in a
reduced form at once: a refused time is dropped on its own first (``x-bridge-time-omitted``
keeps it); otherwise each form is smaller than the one before: without its value
(``x-bridge-value-omitted``), then without the source's headers
(``x-bridge-headers-omitted``), then without its key and its time
(``x-bridge-key-omitted``); the ``x-bridge-*`` headers say where the original is, for
``replay``. Refused even at its smallest, or refused for availability, it is retried as it
is (:class:`~bridge.kafka.writer.TopicWriter`). The record's offset stays uncommitted until the
write succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError

from bridge.errors import CappedError, DecodeError, HeldError, RecordError
from bridge.kafka.writer import CONTENT, CONTENT_ERRORS, NOTHING_OMITTED, Omitted, TopicWriter
from bridge.logs import redact
from bridge.model import Record
from bridge.tracing import TRACEPARENT, TRACESTATE

log = structlog.get_logger("bridge.kafka.deadletter")

BRIDGE_HEADER = "x-bridge-"  # the bridge's own headers: every one a dead letter carries is ours
# A source record's own ``x-bridge-*`` header is kept under this prefix: a producer cannot
# forge the customer (trace), the rule (redrive's --rule) or an omission (redrive's refusal).
SOURCE_PREFIX = "x-source-"
# Every header a dead letter carries beside its record's own; this module alone names them.
SOURCE_TOPIC = "x-bridge-source-topic"  # where the record was read
SOURCE_PARTITION = "x-bridge-source-partition"
SOURCE_OFFSET = "x-bridge-source-offset"
ERROR_CLASS = "x-bridge-error-class"  # decode, mapping, rejected, capped, held, internal
ERROR_REASON = "x-bridge-error-reason"
RULE = "x-bridge-rule"  # the rule whose command failed, when one did
CAP = "x-bridge-cap"  # the frequency cap a command was over (class capped): it alone is dead-lettered
HTTP_STATUS = "x-bridge-http-status"  # Intilery's answer, when it gave one
RULES_VERSION = "x-bridge-rules-version"  # of the rules that mapped it
USER_ID = "x-bridge-user-id"  # the customer, when a command was made
TRACE_ID = "x-bridge-trace-id"
VALUE_OMITTED = "x-bridge-value-omitted"
HEADERS_OMITTED = "x-bridge-headers-omitted"
KEY_OMITTED = "x-bridge-key-omitted"
TIME_OMITTED = "x-bridge-time-omitted"
REASON_LIMIT = 1024  # characters of x-bridge-error-reason
ALONE = frozenset({CappedError.error_class, HeldError.error_class})  # classes of one command alone
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})  # kept even when the source's headers are not
# What a dead letter is written without: each size step smaller than the one before; a
# refused time is dropped on its own first.
NO_VALUE: Omitted = frozenset({"value"})
NO_HEADERS: Omitted = NO_VALUE | {"headers"}
MINIMAL: Omitted = NO_HEADERS | {"key", "time"}


def _smaller(form: Omitted, code: int | None) -> Omitted | None:
    """The form to try at once after a refusal with ``code``; None: try the same later."""
    if code == KafkaError.INVALID_TIMESTAMP and "time" not in form:
        return form | {"time"}
    if code not in CONTENT_ERRORS and code != CONTENT:
        return None
    for step in (NO_VALUE, NO_HEADERS, MINIMAL):
        if not step <= form:
            return form | step
    return None


def bounded_reason(reason: str) -> str:
    """The reason, secrets redacted, cut at :data:`REASON_LIMIT` characters with its length noted."""
    reason = redact(reason)
    if len(reason) <= REASON_LIMIT:
        return reason
    return f"{reason[:REASON_LIMIT]}... (cut; {len(reason)} characters in all)"


def header_bytes(text: str) -> bytes:
    """UTF-8 that always encodes: a lone surrogate or the like is written escaped."""
    return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class FailureContext:
    """What the bridge knew of a failure beyond its record: the version of the rules that
    mapped it, the customer (when a command was made) and the record's trace."""

    rules_version: str | None = None
    user: str | None = None
    trace_id: str | None = None


NO_CONTEXT = FailureContext()


def dead_letter_headers(
    record: Record, error: RecordError, form: Omitted = NOTHING_OMITTED, known: FailureContext = NO_CONTEXT
) -> list[tuple[str, bytes | None]]:
    extra = {
        SOURCE_TOPIC: record.topic,
        SOURCE_PARTITION: str(record.partition),
        SOURCE_OFFSET: str(record.offset),
        ERROR_CLASS: error.error_class,
        ERROR_REASON: bounded_reason(error.reason),
    }
    if error.rule:
        extra[RULE] = error.rule[:REASON_LIMIT]
    if isinstance(error, CappedError):
        extra[CAP] = error.cap[:REASON_LIMIT]
    if error.status is not None:
        extra[HTTP_STATUS] = str(error.status)
    if known.rules_version is not None:
        extra[RULES_VERSION] = known.rules_version
    if known.user is not None:
        extra[USER_ID] = known.user[:REASON_LIMIT]
    if known.trace_id is not None:
        extra[TRACE_ID] = known.trace_id
    if "value" in form:
        extra[VALUE_OMITTED] = f"{len(record.value or b'')} bytes"
    if "headers" in form:
        extra[HEADERS_OMITTED] = f"{len(record.headers)} headers"
    if "key" in form:
        extra[KEY_OMITTED] = f"{len(record.key or b'')} bytes"
    if "time" in form and record.timestamp_ms is not None:
        extra[TIME_OMITTED] = str(record.timestamp_ms)  # the record's own time, in epoch ms
    source = [(forwarded(k), v) for k, v in record.headers if "headers" not in form or k in TRACE_HEADERS]
    return [*source, *((k, header_bytes(v)) for k, v in extra.items())]


def header_text(name: str) -> str:
    """A header name the producer can encode."""
    return header_bytes(name).decode("utf-8")


def forwarded(name: str) -> str:
    """A source header's name in its dead letter: as it was, but for one that looks like the
    bridge's own (``x-bridge-*``), kept under :data:`SOURCE_PREFIX`."""
    text = header_text(name)
    return SOURCE_PREFIX + text if text.lower().startswith(BRIDGE_HEADER) else text


def restored(name: str) -> str:
    """The source header's own name again (:func:`forwarded` undone), for redrive."""
    inner = name.removeprefix(SOURCE_PREFIX)
    return inner if inner != name and inner.lower().startswith(BRIDGE_HEADER) else name


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """What a dead letter's headers say, read back (redrive's filters, ``trace``,
    ``redrive --discard``, the demo): each None when absent or unreadable (another
    writer's record, a header an older bridge did not write)."""

    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    error_class: str | None
    reason: str | None
    rule: str | None
    rules_version: str | None
    status: int | None
    user: str | None
    trace_id: str | None
    cap: str | None = None

    @property
    def alone(self) -> bool:
        """Whether the dead letter holds one command of its rule alone (over a cap, or held by
        its rule's flood breaker): a redrive sends that command only, never the record's
        other commands again."""
        return self.error_class in ALONE and self.rule is not None

    @classmethod
    def of(cls, dead_letter: Record) -> DeadLetterHeaders:
        texts = dead_letter.header_texts()
        return cls(
            source_topic=texts.get(SOURCE_TOPIC),
            source_partition=_number(texts.get(SOURCE_PARTITION)),
            source_offset=_number(texts.get(SOURCE_OFFSET)),
            error_class=texts.get(ERROR_CLASS),
            reason=texts.get(ERROR_REASON),
            rule=texts.get(RULE),
            rules_version=texts.get(RULES_VERSION),
            status=_number(texts.get(HTTP_STATUS)),
            user=texts.get(USER_ID),
            trace_id=texts.get(TRACE_ID),
            cap=texts.get(CAP),
        )


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def original_of(dead_letter: Record) -> Record:
    """The record a dead letter was made from: its original topic, partition, offset and
    headers (the bridge's own removed, the source's own given their names back); key,
    value and time are kept as they were."""
    headers = {name: value for name, value in dead_letter.headers}
    try:
        topic = (headers[SOURCE_TOPIC] or b"").decode()
        partition = int(headers[SOURCE_PARTITION] or b"")
        offset = int(headers[SOURCE_OFFSET] or b"")
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("not a dead letter of this bridge: no x-bridge-source-* headers") from exc
    omitted = headers.get(VALUE_OMITTED)
    if omitted is not None:
        raise DecodeError(
            f"the dead letter was written without its value ({omitted.decode(errors='replace')}, too large); "
            f"replay {topic} partition {partition} offset {offset} instead"
        )
    kept = [
        (restored(name), value) for name, value in dead_letter.headers if not name.startswith(BRIDGE_HEADER)
    ]
    return Record(
        topic, partition, offset, dead_letter.key, dead_letter.value, kept, dead_letter.timestamp_ms
    )


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter on its way: the record, why, and what else the bridge knew."""

    record: Record
    error: RecordError
    known: FailureContext


class DeadLetters(TopicWriter[Letter]):
    kind, what = "dead_letter", "the dead-letter topic"

    def send(
        self,
        record: Record,
        error: RecordError,
        on_done: Callable[[], None],
        known: FailureContext = NO_CONTEXT,
    ) -> None:
        """Write ``record`` with ``error`` (and what else the bridge knew of it); ``on_done``
        once the broker has it."""
        self._write(Letter(record, error, known), on_done)

    def _message(self, letter: Letter, form: Omitted) -> dict[str, Any]:
        record = letter.record
        return {
            "key": None if "key" in form else record.key,
            "value": None if "value" in form else record.value,
            "headers": dead_letter_headers(record, letter.error, form, letter.known),
            # the event's time, for redrive (0: the producer's)
            "timestamp": 0 if "time" in form else record.timestamp_ms or 0,
        }

    def _smaller(self, form: Omitted, code: int | None) -> Omitted | None:
        return _smaller(form, code)

    def _reduced(self, letter: Letter, form: Omitted, smaller: Omitted, reason: str) -> None:
        where = self._where(letter)
        if "value" in smaller - form:
            log.warning(
                "dead_letter_value_omitted", **where, bytes=len(letter.record.value or b""), error=reason
            )
        else:
            omitted = " and ".join(sorted(smaller - form))
            log.warning("dead_letter_reduced", **where, omitted=omitted, error=reason)

    def _where(self, letter: Letter) -> dict[str, Any]:
        record = letter.record
        return {"source_topic": record.topic, "partition": record.partition, "offset": record.offset}
