"""Avro record values → events: Confluent wire format, local schemas, the registry.

Takes a record value and the topic's Avro settings; gives the decoded event as
JSON-ready values (the logical-type table below); raises
:class:`~bridge.errors.DecodeError` with a precise reason for a wrong magic
byte, an unknown schema id (registry 404) or bytes that do not decode, and
:class:`SchemaNotCached` when the registry must be asked first (the pipeline
then fetches the schema off the hot path, retrying while the registry is down:
that is never the record's fault).

=====================  =======================================================
Avro                   event value
=====================  =======================================================
timestamp-millis       ISO-8601 UTC string, milliseconds (``...T18:42:11.123Z``)
timestamp-micros       ISO-8601 UTC string, microseconds
local-timestamp-*      ISO-8601 string without offset (read as UTC)
date                   ISO date string (``2026-11-21``)
time-millis/-micros    ISO time string (``18:42:11.123``)
decimal                string holding the exact value (``"1899.00"``); no more
                       bytes than its precision needs (:func:`read_decimal`)
uuid                   string
bytes, fixed           base64 string
enum                   its symbol, a string
union                  the value of the branch (no ``{"type": value}`` wrapper)
=====================  =======================================================
"""

from __future__ import annotations

import base64
import decimal
import functools
import io
import json
import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import fastavro.json_read
import fastavro.read
from fastavro.types import Schema

from bridge.decode.avrobounds import DEFAULT_MAX_DEPTH, bounded_walk
from bridge.errors import DecodeError

MAGIC = 0
_HEADER = struct.Struct(">bI")
# The most digits a decimal may have, whatever precision its schema declares (Python's own
# bound on turning an int into text): its bytes then cost well under a millisecond.
MAX_DECIMAL_DIGITS = 4300
_DECIMAL_CONTEXT = decimal.Context(prec=MAX_DECIMAL_DIGITS)


class SchemaNotCached(Exception):
    """The record's schema id has not been fetched from the registry yet."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(schema_id)
        self.schema_id = schema_id


def load_schema(path: str | Path) -> Schema:
    """Parse an ``.avsc`` file; ValueError with the reason if it is not a valid schema."""
    try:
        return fastavro.parse_schema(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise ValueError(f"{path} is not a valid Avro schema: {exc}") from exc


def parse_schema_text(text: str) -> Schema:
    return fastavro.parse_schema(json.loads(text))


def jsonable(value: Any) -> Any:
    """Turn fastavro's logical-type values into the values rules and Intilery use."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return _CONVERT.get(type(value), _fallback)(value)


def _datetime(value: datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat(timespec="milliseconds" if value.microsecond % 1000 == 0 else "microseconds")
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _fallback(value: Any) -> Any:
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return str(value)


_CONVERT: dict[type, Callable[[Any], Any]] = {
    datetime: _datetime,
    date: lambda v: v.isoformat(),
    time: lambda v: v.isoformat(timespec="milliseconds" if v.microsecond % 1000 == 0 else "microseconds"),
    Decimal: str,
    UUID: str,
    bytes: lambda v: base64.b64encode(v).decode(),
}


@functools.cache
def decimal_bits(precision: int) -> int:
    """The most bits a decimal of ``precision`` digits needs, its sign aside."""
    return int(10 ** min(precision, MAX_DECIMAL_DIGITS) - 1).bit_length()


def read_decimal(
    data: bytes, writer_schema: dict[Any, Any] | None = None, reader_schema: dict[Any, Any] | None = None
) -> Decimal:
    """fastavro's decimal reader, bounded: turning an int into a ``Decimal`` is quadratic in its
    size (a 1 MB decimal would hold the loop for more than a minute), so a value larger than
    the schema's precision allows (at most :data:`MAX_DECIMAL_DIGITS` digits) is refused
    before it is converted; leading sign bytes (a ``fixed`` padded to its size) cost nothing.
    The value is kept exact within the bound (fastavro would round it to the precision)."""
    writer_schema = writer_schema or {}
    precision = int(writer_schema.get("precision") or 0)
    unscaled = int.from_bytes(data, byteorder="big", signed=True)  # linear in the bytes
    if unscaled.bit_length() > decimal_bits(precision):
        raise ValueError(f"a decimal of {len(data)} bytes: more than precision {precision} allows")
    exact = _DECIMAL_CONTEXT.create_decimal(unscaled)
    return exact.scaleb(-int(writer_schema.get("scale", 0)), _DECIMAL_CONTEXT)


# fastavro's documented hook for logical types: the reader it calls for every decimal.
fastavro.read.LOGICAL_READERS["bytes-decimal"] = read_decimal
fastavro.read.LOGICAL_READERS["fixed-decimal"] = read_decimal


class Reader:
    """Avro binary with one schema → events, within :mod:`bridge.decode.avrobounds`' bounds:
    a schema that could make fastavro's C reader recurse or allocate without bound has each
    record walked under them first."""

    def __init__(self, schema: Schema, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.schema = schema
        # An event is a record: any other top level is refused before its bytes are read (the
        # bounds find the types a schema names only under a record).
        self._record = isinstance(schema, dict) and schema.get("type") in ("record", "error")
        self._walk = bounded_walk(schema, max_depth) if self._record else None

    def read(self, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Avro binary (no framing) from ``offset`` → event; DecodeError if it does not decode."""
        if not self._record:
            raise DecodeError("the Avro schema's top level is not a record")
        if self._walk is not None:
            self._walk(data, offset)
        stream = io.BytesIO(data)
        stream.seek(offset)
        try:
            value = fastavro.schemaless_reader(stream, self.schema, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ... on bad bytes
            raise DecodeError(
                f"bytes do not decode with the Avro schema: {type(exc).__name__}: {exc}"[:300]
            ) from exc
        trailing = len(data) - stream.tell()
        if trailing:
            raise DecodeError(f"bytes do not decode with the Avro schema: {trailing} bytes left over")
        if not isinstance(value, dict):
            raise DecodeError("the Avro schema's top level is not a record")
        event: dict[str, Any] = jsonable(value)
        return event


def read_binary(data: bytes, schema: Schema, offset: int = 0) -> dict[str, Any]:
    """One record with a schema read once (a topic's decoder keeps its :class:`Reader`)."""
    return Reader(schema).read(data, offset)


def read_json(line: str, schema: Schema) -> dict[str, Any]:
    """One event in the schema's JSON encoding (as ``map --format avro`` takes it)."""
    try:
        value = next(iter(fastavro.json_reader(io.StringIO(line), schema)))
    except Exception as exc:
        raise DecodeError(
            f"does not match the Avro schema's JSON form: {type(exc).__name__}: {exc}"[:300]
        ) from exc
    if not isinstance(value, dict):
        raise DecodeError("the Avro schema's top level is not a record")
    event: dict[str, Any] = jsonable(value)
    return event


def split_frame(data: bytes | None) -> int:
    """The schema id of a Confluent-framed value; DecodeError if it is not framed."""
    if data is None:
        raise DecodeError("record has no value (tombstone)")
    if len(data) < _HEADER.size:
        raise DecodeError(f"value is {len(data)} bytes, too short for the 5-byte schema registry header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(
            f"wrong magic byte 0x{data[0]:02x} (expected 0x00, the schema registry wire format)"
        )
    return int(schema_id)
