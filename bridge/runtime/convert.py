"""One record → its commands: the one record boundary that ``run``, ``replay`` (and its
``--dry-run``), ``map``, ``test`` and ``diff`` share, so the same input gives each the
same outcome and reason; and which of them ``run`` would skip (:func:`preview`).

Whatever the record carries, the answer is its commands or a
:class:`~bridge.errors.RecordError` to dead-letter it with: an exception of any other type
(OverflowError, RecursionError, UnicodeError, MemoryError from one record's size, a bug)
becomes an :class:`~bridge.errors.InternalError` (class ``internal``, the exception's type
in the reason), logged once at error level with its stack. It never reaches the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import structlog

from bridge.decode.avro import SchemaNotCached
from bridge.errors import InternalError, MissingFields, RecordError, Withheld
from bridge.intilery.sending import withheld
from bridge.model import Command, Record
from bridge.rules.mapping import Mapper
from bridge.runtime.ports import RecordDecoder

log = structlog.get_logger("bridge")


Watch = Callable[[str, tuple[str, ...], str], None]  # (rule, fields, on_missing): templates' holes


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
    decoder: RecordDecoder, mapper: Mapper, record: Record, watch: Watch | None = None
) -> list[Command]:
    """A Kafka record's commands (see :func:`commands_of`)."""
    return commands_of(mapper, record.meta(), lambda: decoder.decode(record.topic, record.value), watch=watch)


def fetched_commands(decoder: RecordDecoder, mapper: Mapper, record: Record) -> list[Command]:
    """As :func:`record_commands`, for a one-shot reader (``diff``, ``replay --dry-run``):
    a schema not cached yet is fetched from the registry first, waiting for it."""
    while True:
        try:
            return record_commands(decoder, mapper, record)
        except SchemaNotCached as missing:
            assert decoder.registry is not None
            decoder.registry.fetch(missing.schema_id)


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
