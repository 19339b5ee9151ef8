"""The ``map`` verb's work: events (JSON Lines, or the Avro schema's JSON form) mapped
offline to the commands that would be posted, one JSON line each."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from fastavro.types import Schema

from bridge import logs
from bridge.config import SourceConfig
from bridge.convert import Preview, commands_of, preview
from bridge.decode.avro import load_schema, read_json
from bridge.decode.decoder import decode_json, resolve_path
from bridge.errors import ConfigError, RecordError
from bridge.ops.plural import counted
from bridge.rules.mapping import Mapper

DecodeLine = Callable[[bytes], dict[str, Any]]


def avro_json_decoder(schema: Schema) -> DecodeLine:
    """Events in the schema's JSON form; a ``_kafka`` object beside the fields is kept."""

    def decode(line: bytes) -> dict[str, Any]:
        raw = decode_json(line)
        overrides = raw.pop("_kafka", None)
        event = read_json(json.dumps(raw), schema)
        if overrides is not None:
            event["_kafka"] = overrides
        return event

    return decode


def offline_events(
    source: SourceConfig, topic: str | None, format: str, schema: str | None, config_path: str
) -> tuple[str, DecodeLine | None]:
    """``--topic`` (default the first source topic), and how its events are read: JSON, or
    with ``--format avro`` in the schema's JSON form (``--schema``, else the topic's own)."""
    topic = topic or source.topic_names[0]
    if topic not in source.topic_names:
        raise ConfigError([f"--topic {topic}: not in source.topics ({', '.join(source.topic_names)})"])
    if format != "avro":
        return topic, None
    path = schema or next(t for t in source.resolved() if t.name == topic).schema_path
    if not path:
        raise ConfigError(
            [f"--format avro: give --schema FILE.avsc (topic {topic} takes its schemas from the registry)"]
        )
    try:
        return topic, avro_json_decoder(load_schema(path if schema else resolve_path(path, config_path)))
    except ValueError as exc:
        raise ConfigError([f"--schema: {exc}"]) from exc


@contextlib.contextmanager
def event_lines(file: str) -> Iterator[Iterable[bytes]]:
    """The lines of ``file`` (``-``: standard input), as bytes: a line that is not UTF-8 is
    that line's decode error, as for a record."""
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from exc
    with handle:
        yield handle


Event = Callable[[], dict[str, Any]]  # decodes the line when called (its failure is the record's)


def events(
    lines: Iterable[bytes], topic: str, decode: DecodeLine | None = None
) -> Iterator[tuple[int, dict[str, Any], Event]]:
    """Per non-blank line: its number, the ``_kafka`` root the rules see (a ``_kafka``
    object in the line overrides it) and the event, decoded when called."""
    decode = decode or decode_json
    now_ms = int(time.time() * 1000)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        meta: dict[str, Any] = {
            "topic": topic,
            "partition": 0,
            "offset": number - 1,
            "key": None,
            "timestamp": now_ms,
            "headers": {},
        }

        def event(line: bytes = line, meta: dict[str, Any] = meta) -> dict[str, Any]:
            decoded = decode(line)
            overrides = decoded.pop("_kafka", None)
            if isinstance(overrides, dict):
                meta.update(overrides)
            return decoded

        yield number, meta, event


def map_lines(
    mapper: Mapper,
    lines: Iterable[bytes],
    topic: str,
    out: TextIO,
    err: TextIO,
    decode: DecodeLine | None = None,
    ignore_max_age: bool = False,
) -> int:
    """Map JSON Lines events; print the commands ``run`` would send to ``out``; to ``err``,
    failures, the commands it would skip (``max_age`` measured at the record's time, unless
    ``ignore_max_age``; ``on_missing: skip``) and the fields templates did not find, then a
    summary line; count failures."""
    failures = read = produced = unmatched = withheld = 0
    for number, meta, event in events(lines, topic, decode):
        read += 1
        try:
            commands = commands_of(mapper, meta, event)
        except RecordError as exc:
            failures += 1
            rule = f" rule {exc.rule}:" if exc.rule else ""
            print(f"line {number}: {exc.error_class}:{rule} {logs.redact(exc.reason)}", file=err)
            continue
        unmatched += not commands
        shown = preview(commands, None if ignore_max_age else meta.get("timestamp"))
        for note in notes(shown):
            print(f"line {number}: {note}", file=err)
        produced += len(shown.sent)
        withheld += len(shown.withheld)
        for command in shown.sent:
            out.write(json.dumps(command.as_json_line(), ensure_ascii=False) + "\n")
    summary = f"map: {counted(read, 'event')} read, {counted(produced, 'command')}, "
    summary += f"{unmatched} matched no rule, {failures} failed"
    print(summary + (f", {withheld} not sent" if withheld else ""), file=err)
    return failures


def notes(shown: Preview) -> list[str]:
    """What a preview says of a record's commands beside them: those ``run`` would skip,
    and why, and the fields the sent ones lack (left out of their bodies)."""
    said = [f"rule {c.rule}: not sent, {w.outcome}: {w.reason}" for c, w in shown.withheld]
    return said + [
        f"rule {c.rule}: fields absent from the event, left out: {', '.join(c.missing)}"
        for c in shown.sent
        if c.missing
    ]
