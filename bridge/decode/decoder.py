"""Record bytes → event, per topic: JSON, plain Avro, or Avro via the registry.

Takes a Kafka record value and its topic; gives the decoded event (a JSON
object as a dict); raises :class:`~bridge.errors.DecodeError` with a precise
reason, or :class:`~bridge.decode.avro.SchemaNotCached` when the registry must be
asked first (see :mod:`bridge.decode.avro` for the Avro side and its logical types).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config import SourceConfig, TopicConfig
from bridge.decode.avro import Reader, SchemaNotCached, load_schema, split_frame
from bridge.decode.registry import SchemaRegistry
from bridge.errors import ConfigError, DecodeError

Decode = Callable[[bytes | None], dict[str, Any]]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once, not per record


def decode_json(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise DecodeError("record has no value (tombstone)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not valid UTF-8 (byte {exc.start})") from exc
    try:
        event = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except ValueError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("invalid JSON: nested too deeply") from exc
    if not isinstance(event, dict):
        raise DecodeError(f"event is a JSON {type(event).__name__}, expected an object")
    return event


def resolve_path(path: str, config_file: str) -> Path:
    """A relative path is taken from the config file's folder, so a configuration works
    from any directory; then (as before) from the current directory."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    beside = Path(config_file).resolve().parent / candidate
    return beside if beside.exists() or not candidate.exists() else candidate


class Decoder:
    """Decodes each topic as ``source.topics`` says, by its format's registered decoder
    (:data:`FORMATS`); local schemas load at start-up. ``registry``: the schema registry's
    client, which the factory builds (:func:`~bridge.decode.registry.registry_for`), for
    the topics in its wire format."""

    def __init__(
        self, source: SourceConfig, config_file: str, registry: SchemaRegistry | None = None
    ) -> None:
        self.registry = registry
        self.config_file = config_file
        self.max_depth = source.avro_max_depth
        self._by_topic: dict[str, Decode] = {}
        problems = []
        for index, topic in enumerate(source.resolved()):
            try:
                self._by_topic[topic.name] = FORMATS[topic.format or source.format](self, topic)
            except ValueError as exc:
                problems.append(f"{config_file}: source.topics[{index}] ({topic.name}).schema: {exc}")
        if problems:
            raise ConfigError(problems)

    def decode(self, topic: str, value: bytes | None) -> dict[str, Any]:
        return self._by_topic.get(topic, decode_json)(value)

    def framed(self, value: bytes | None) -> dict[str, Any]:
        """Avro in the schema registry's wire format: the schema's id, then the record."""
        schema_id = split_frame(value)
        assert self.registry is not None and value is not None
        reader = self.registry.cached(schema_id)
        if reader is None:
            raise SchemaNotCached(schema_id)
        return reader.read(value, offset=5)


def json_format(decoder: Decoder, topic: TopicConfig) -> Decode:
    return decode_json


def avro_format(decoder: Decoder, topic: TopicConfig) -> Decode:
    """A local schema (``schema``), else the registry's wire format; ValueError: the local
    schema cannot be loaded."""
    if not topic.schema_path:
        return decoder.framed
    reader = Reader(load_schema(resolve_path(topic.schema_path, decoder.config_file)), decoder.max_depth)

    def decode(value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise DecodeError("record has no value (tombstone)")
        return reader.read(value)

    return decode


# A topic's format (``source.topics[].format``) → what makes its decoder; a new format is
# one more entry here (and in the configuration's ``Format``).
FORMATS: dict[str, Callable[[Decoder, TopicConfig], Decode]] = {"json": json_format, "avro": avro_format}
