"""The ``map`` verb's work: events (JSON Lines, or the Avro schema's JSON form) mapped
offline to the commands that would be posted, one JSON line each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from fastavro.types import Schema

from bridge import logs
from bridge.decode.avro import read_json
from bridge.decode.decoder import decode_json
from bridge.errors import RecordError
from bridge.rules.mapping import Mapper
from bridge.runtime.convert import commands_of

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
) -> int:
    """Map JSON Lines events; print commands to ``out``, failures to ``err``, then a
    summary line to ``err``; count failures."""
    failures = read = produced = unmatched = 0
    for number, meta, event in events(lines, topic, decode):
        read += 1
        try:
            commands = commands_of(mapper, meta, event)
        except RecordError as exc:
            failures += 1
            rule = f" rule {exc.rule}:" if exc.rule else ""
            print(f"line {number}: {exc.error_class}:{rule} {logs.redact(exc.reason)}", file=err)
            continue
        produced += len(commands)
        unmatched += not commands
        for command in commands:
            out.write(json.dumps(command.as_json_line(), ensure_ascii=False) + "\n")
    print(
        f"map: {read} events read, {produced} commands, {unmatched} matched no rule, {failures} failed",
        file=err,
    )
    return failures
