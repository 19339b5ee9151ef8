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
is (:class:`~bridge.kafka.writer.Writer`). The record's offset stays uncommitted until the
write succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError

from bridge.errors import RecordError
from bridge.kafka.writer import CONTENT, CONTENT_ERRORS, FULL, Form, Writer
from bridge.logs import redact
from bridge.model import Record
from bridge.tracing import TRACEPARENT, TRACESTATE

log = structlog.get_logger("bridge.kafka.deadletter")

BRIDGE_HEADER = "x-bridge-"  # the bridge's own headers: every one a dead letter carries is ours
# A source record's own ``x-bridge-*`` header is kept under this prefix: a producer cannot
# forge the customer (trace), the rule (redrive's --rule) or an omission (redrive's refusal).
SOURCE_PREFIX = "x-source-"
VALUE_OMITTED = "x-bridge-value-omitted"
HEADERS_OMITTED = "x-bridge-headers-omitted"
KEY_OMITTED = "x-bridge-key-omitted"
TIME_OMITTED = "x-bridge-time-omitted"
USER_ID, TRACE_ID = "x-bridge-user-id", "x-bridge-trace-id"
REASON_LIMIT = 1024  # characters of x-bridge-error-reason
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})  # kept even when the source's headers are not
# What a dead letter is written without: each size step smaller than the one before; a
# refused time is dropped on its own first.
NO_VALUE: Form = frozenset({"value"})
NO_HEADERS: Form = NO_VALUE | {"headers"}
MINIMAL: Form = NO_HEADERS | {"key", "time"}


def _smaller(form: Form, code: int | None) -> Form | None:
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
class Known:
    """What the bridge knew of a failure beyond its record: the version of the rules that
    mapped it, the customer (when a command was made) and the record's trace."""

    rules_version: str | None = None
    user: str | None = None
    trace_id: str | None = None


UNKNOWN = Known()


def dead_letter_headers(
    record: Record, error: RecordError, form: Form = FULL, known: Known = UNKNOWN
) -> list[tuple[str, bytes | None]]:
    extra = {
        "x-bridge-source-topic": record.topic,
        "x-bridge-source-partition": str(record.partition),
        "x-bridge-source-offset": str(record.offset),
        "x-bridge-error-class": error.error_class,
        "x-bridge-error-reason": bounded_reason(error.reason),
    }
    if error.rule:
        extra["x-bridge-rule"] = error.rule[:REASON_LIMIT]
    if error.status is not None:
        extra["x-bridge-http-status"] = str(error.status)
    if known.rules_version is not None:
        extra["x-bridge-rules-version"] = known.rules_version
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
class Letter:
    """A dead letter on its way: the record, why, and what else the bridge knew."""

    record: Record
    error: RecordError
    known: Known


class DeadLetters(Writer[Letter]):
    kind, what = "dead_letter", "the dead-letter topic"

    def send(
        self,
        record: Record,
        error: RecordError,
        on_done: Callable[[], None],
        known: Known = UNKNOWN,
    ) -> None:
        """Write ``record`` with ``error`` (and what else the bridge knew of it); ``on_done``
        once the broker has it."""
        self._write(Letter(record, error, known), on_done)

    def _message(self, letter: Letter, form: Form) -> dict[str, Any]:
        record = letter.record
        return {
            "key": None if "key" in form else record.key,
            "value": None if "value" in form else record.value,
            "headers": dead_letter_headers(record, letter.error, form, letter.known),
            # the event's time, for redrive (0: the producer's)
            "timestamp": 0 if "time" in form else record.timestamp_ms or 0,
        }

    def _smaller(self, form: Form, code: int | None) -> Form | None:
        return _smaller(form, code)

    def _reduced(self, letter: Letter, form: Form, smaller: Form, reason: str) -> None:
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
