"""One record → its commands: the one boundary that ``run`` (with ``--shadow`` too),
``replay`` and ``redrive`` (and their ``--dry-run``), ``map``, ``test`` and ``diff``
share, so the same input gives each the same outcome and reason; and which of them
``run`` would skip (:func:`preview`).

It is decoding and the rules, nothing of the running bridge: it sits above
:mod:`bridge.decode`, :mod:`bridge.rules` and the rule's sending policy
(:func:`bridge.intilery.sending.withheld`), below both the runtime and the offline
verbs, which use it alike.

Whatever the record carries, the answer is its commands or a
:class:`~bridge.errors.RecordError` to dead-letter it with: an exception of any other type
(OverflowError, RecursionError, UnicodeError, MemoryError from one record's size, a bug)
becomes an :class:`~bridge.errors.InternalError` (class ``internal``, the exception's type
in the reason), logged once at error level with its stack. It never reaches the loop.
A record whose Avro schema is not fetched yet raises
:class:`~bridge.decode.avro.SchemaNotCached` (no error: the caller fetches it first),
unless the caller asks :func:`record_commands` to ``fetch`` it, waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import structlog

from bridge.decode.avro import SchemaNotCached
from bridge.decode.registry import SchemaRegistry
from bridge.errors import InternalError, MissingFields, RecordError
from bridge.intilery.sending import withheld
from bridge.model import Command, Record, Withheld
from bridge.rules.mapping import Mapper

log = structlog.get_logger("bridge")


Watch = Callable[[str, tuple[str, ...], str], None]  # (rule, fields, on_missing): templates' holes


class RecordDecoder(Protocol):
    """Bytes of a topic to an event."""

    @property
    def registry(self) -> SchemaRegistry | None: ...

    def decode(self, topic: str, value: bytes | None, /) -> dict[str, Any]: ...


class Beside(Protocol):
    """Told of every record the live rules decoded, with what they made of it (``run
    --shadow``'s candidate maps the same event)."""

    def compare(
        self,
        record: Record,
        live: list[Command] | RecordError,
        event: dict[str, Any],
        meta: dict[str, Any],
        live_rules: Mapper,
        /,
    ) -> None: ...


def commands_of(
    mapper: Mapper,
    meta: dict[str, Any],
    event: Callable[[], dict[str, Any]],
    known: dict[str, Command | None] | None = None,
    watch: Watch | None = None,
) -> list[Command]:
    """The commands the rules make of ``event()`` (decoding happens inside: its failures
    are the record's too) with the ``_kafka`` root ``meta`` (``known``: see
    :meth:`Mapper.map`); ``watch`` is told of every field a template did not find."""
    try:
        commands = mapper.map(event(), meta, known)
    except MissingFields as exc:
        if watch is not None and exc.rule is not None:
            watch(exc.rule, exc.fields, "dead_letter")
        raise
    except (RecordError, SchemaNotCached):
        raise
    except Exception as exc:
        log.error(
            "record_internal_error",
            topic=meta.get("topic"),
            partition=meta.get("partition"),
            offset=meta.get("offset"),
            error_type=type(exc).__name__,
            exc_info=True,
        )
        raise InternalError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    if watch is not None:
        for command in commands:
            if command.missing:
                watch(command.rule, command.missing, "skip" if command.held else "empty")
    return commands


def record_commands(
    decoder: RecordDecoder,
    mapper: Mapper,
    record: Record,
    *,
    watch: Watch | None = None,
    beside: Beside | None = None,
    fetch: bool = False,
) -> list[Command]:
    """A Kafka record's commands (see :func:`commands_of`); ``beside`` is told of them,
    or of why there are none, from the same decoded event. ``fetch``: a schema not cached
    yet is fetched from the registry first, waiting for it (a one-shot reader: ``diff``,
    the dry runs); otherwise :class:`SchemaNotCached` is raised."""
    while True:
        try:
            return _mapped(decoder, mapper, record, watch, beside)
        except SchemaNotCached as missing:
            if not fetch or decoder.registry is None:
                raise
            decoder.registry.fetch(missing.schema_id)


def _mapped(
    decoder: RecordDecoder, mapper: Mapper, record: Record, watch: Watch | None, beside: Beside | None
) -> list[Command]:
    meta = record.meta()
    decoded: list[dict[str, Any]] = []

    def event() -> dict[str, Any]:
        decoded.append(decoder.decode(record.topic, record.value))
        return decoded[0]

    try:
        commands = commands_of(mapper, meta, event, watch=watch)
    except RecordError as exc:
        if beside is not None and decoded:  # decoded, but the live rules could not map it
            beside.compare(record, exc, decoded[0], meta, mapper)
        raise
    if beside is not None:
        beside.compare(record, commands, decoded[0], meta, mapper)
    return commands


class Preview(NamedTuple):
    """A record's commands as a preview shows them: those ``run`` would send, and those it
    would skip, each with why (:func:`~bridge.intilery.sending.withheld`)."""

    sent: list[Command]
    withheld: list[tuple[Command, Withheld]]


def preview(commands: list[Command], now_ms: int | None) -> Preview:
    """``commands`` split as ``run`` would at ``now_ms`` (None: whatever their age)."""
    sent: list[Command] = []
    skipped: list[tuple[Command, Withheld]] = []
    for command in commands:
        reason = withheld(command, now_ms)
        if reason is None:
            sent.append(command)
        else:
            skipped.append((command, reason))
    return Preview(sent, skipped)
