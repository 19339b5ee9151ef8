"""Avro decoding: logical types, unions, nested records, arrays, maps, and
every decode error class."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import SourceConfig
from bridge.decode.avro import Reader, SchemaNotCached, read_binary, read_json, split_frame
from bridge.decode.avrobounds import bounded_walk
from bridge.decode.decoder import Decoder
from bridge.decode.registry import MAX_NOT_FOUND, MAX_SCHEMAS, SchemaRegistry, registry_for
from bridge.errors import ConfigError, DecodeError, RetryableError
from tests.fuzzing import avro_long
from tests.support import FakeRegistryClient

ROOT = Path(__file__).parents[2]

ALL_TYPES = fastavro.parse_schema(
    {
        "type": "record",
        "name": "AllTypes",
        "namespace": "t",
        "fields": [
            {"name": "tsMillis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "tsMicros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "localTs", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "clockMillis", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "clockMicros", "type": {"type": "long", "logicalType": "time-micros"}},
            {
                "name": "money",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            },
            {
                "name": "fixedMoney",
                "type": {
                    "type": "fixed",
                    "name": "F8",
                    "size": 8,
                    "logicalType": "decimal",
                    "precision": 10,
                    "scale": 3,
                },
            },
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "raw", "type": "bytes"},
            {"name": "token", "type": {"type": "fixed", "name": "F2", "size": 2}},
            {"name": "maybe", "type": ["null", "string"], "default": None},
            {
                "name": "either",
                "type": [
                    "null",
                    "long",
                    {"type": "record", "name": "Pair", "fields": [{"name": "a", "type": "int"}]},
                ],
            },
            {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {
                "name": "nested",
                "type": {
                    "type": "record",
                    "name": "Outer",
                    "fields": [
                        {
                            "name": "inner",
                            "type": {
                                "type": "record",
                                "name": "Inner",
                                "fields": [
                                    {
                                        "name": "when",
                                        "type": {"type": "long", "logicalType": "timestamp-millis"},
                                    }
                                ],
                            },
                        }
                    ],
                },
            },
            {
                "name": "list",
                "type": {
                    "type": "array",
                    "items": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1},
                },
            },
            {"name": "tags", "type": {"type": "map", "values": ["null", "int"]}},
        ],
    }
)

VALUE = {
    "tsMillis": datetime(2026, 11, 21, 18, 42, 11, 123000, tzinfo=UTC),
    "tsMicros": datetime(2026, 11, 21, 18, 42, 11, 123456, tzinfo=UTC),
    "localTs": datetime(2026, 11, 21, 18, 42, 11, 5000),
    "day": date(2026, 12, 18),
    "clockMillis": time(18, 42, 11, 123000),
    "clockMicros": time(18, 42, 11, 123456),
    "money": Decimal("1899.00"),
    "fixedMoney": Decimal("-0.125"),
    "id": uuid.UUID("8a1c0a52-5d1e-4f7e-9c1e-0c1f7b3e2a01"),
    "raw": b"\x00\xffhi",
    "token": b"\x01\x02",
    "maybe": None,
    "either": {"a": 7},
    "color": "GREEN",
    "nested": {"inner": {"when": datetime(2020, 1, 1, tzinfo=UTC)}},
    "list": [Decimal("1.5"), Decimal("-2.0")],
    "tags": {"x": 1, "y": None},
}

EXPECTED = {
    "tsMillis": "2026-11-21T18:42:11.123Z",
    "tsMicros": "2026-11-21T18:42:11.123456Z",
    "localTs": "2026-11-21T18:42:11.005",
    "day": "2026-12-18",
    "clockMillis": "18:42:11.123",
    "clockMicros": "18:42:11.123456",
    "money": "1899.00",
    "fixedMoney": "-0.125",
    "id": "8a1c0a52-5d1e-4f7e-9c1e-0c1f7b3e2a01",
    "raw": "AP9oaQ==",
    "token": "AQI=",
    "maybe": None,
    "either": {"a": 7},
    "color": "GREEN",
    "nested": {"inner": {"when": "2020-01-01T00:00:00.000Z"}},
    "list": ["1.5", "-2.0"],
    "tags": {"x": 1, "y": None},
}


def encode(schema: Any, value: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, value)
    return buffer.getvalue()


def test_logical_types_unions_nesting_arrays_maps() -> None:
    assert read_binary(encode(ALL_TYPES, VALUE), ALL_TYPES) == EXPECTED


def test_event_is_json_serialisable_and_times_normalise() -> None:
    from bridge.timestamps import normalise

    event = read_binary(encode(ALL_TYPES, VALUE), ALL_TYPES)
    json.dumps(event)
    assert normalise(event["tsMicros"]) == "2026-11-21T18:42:11.123Z"
    assert normalise(event["localTs"]) == "2026-11-21T18:42:11.005Z"


def test_union_branches_resolve_to_values() -> None:
    for either, expected in ((None, None), (12, 12), ({"a": 1}, {"a": 1})):
        assert read_binary(encode(ALL_TYPES, {**VALUE, "either": either}), ALL_TYPES)["either"] == expected


def test_json_form_for_map() -> None:
    buffer = io.StringIO()
    fastavro.json_writer(buffer, ALL_TYPES, [VALUE])
    assert read_json(buffer.getvalue().strip(), ALL_TYPES) == EXPECTED
    with pytest.raises(DecodeError, match="does not match the Avro schema's JSON form"):
        read_json('{"tsMillis": "soon"}', ALL_TYPES)


def test_framing_errors() -> None:
    with pytest.raises(DecodeError, match=r"wrong magic byte 0x7b \(expected 0x00"):
        split_frame(b'{"a": 1}')
    with pytest.raises(DecodeError, match="too short for the 5-byte schema registry header"):
        split_frame(b"\x00\x00")
    with pytest.raises(DecodeError, match="tombstone"):
        split_frame(None)
    assert split_frame(b"\x00" + struct.pack(">I", 258) + b"x") == 258


def test_bytes_that_do_not_decode() -> None:
    data = encode(ALL_TYPES, VALUE)
    with pytest.raises(DecodeError, match="bytes do not decode with the Avro schema"):
        read_binary(data[: len(data) // 2], ALL_TYPES)
    with pytest.raises(DecodeError, match="3 bytes left over"):
        read_binary(data + b"abc", ALL_TYPES)


SIMPLE = fastavro.parse_schema({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]})


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for schema in (SIMPLE, ALL_TYPES):
        with contextlib.suppress(DecodeError):
            assert isinstance(read_binary(data, schema), dict)


def source(topics: list[Any]) -> SourceConfig:
    return SourceConfig.model_validate({"topics": topics, "schema_registry": {"url": "http://registry"}})


def test_decoder_by_topic_and_registry_cache() -> None:
    client = FakeRegistryClient(
        {7: json.dumps({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]})}
    )
    registry = SchemaRegistry("http://registry", client=client)
    decoder = Decoder(
        source(
            [
                "j",
                {"name": "a", "format": "avro"},
                {"name": "p", "format": "avro", "schema": str(ROOT / "schemas/app_reminder.avsc")},
            ]
        ),
        "bridge.yaml",
        registry,
    )
    assert decoder.decode("j", b'{"x": 1}') == {"x": 1}
    framed = b"\x00" + struct.pack(">I", 7) + encode(SIMPLE, {"s": "hi"})
    with pytest.raises(SchemaNotCached) as missing:
        decoder.decode("a", framed)
    assert missing.value.schema_id == 7

    async def fetch_many() -> None:
        await asyncio.gather(*(registry.ensure(7) for _ in range(20)))

    asyncio.run(fetch_many())
    assert decoder.decode("a", framed) == {"s": "hi"} and client.calls == 1
    reminder = fastavro.parse_schema(json.loads((ROOT / "schemas/app_reminder.avsc").read_text()))
    plain = encode(
        reminder,
        {
            "eventId": uuid.UUID(int=1),
            "occurredAt": datetime(2026, 1, 1, tzinfo=UTC),
            "customer": {"id": "C-1"},
            "message": "m",
            "deviceToken": b"\x01",
        },
    )
    event = decoder.decode("p", plain)
    assert event["type"] == "app_reminder" and event["deviceToken"] == "AQ==" and event["deepLink"] is None


def test_unknown_schema_id_is_a_cached_decode_error() -> None:
    client = FakeRegistryClient({})
    registry = SchemaRegistry("http://registry", client=client)
    with pytest.raises(DecodeError, match=r"unknown schema id 9 \(schema registry 404"):
        registry.fetch(9)
    with pytest.raises(DecodeError, match="unknown schema id 9"):
        registry.cached(9)
    assert client.calls == 1


@pytest.mark.parametrize(
    "error",
    [SchemaRegistryError(503, 50301, "down"), SchemaRegistryError(401, 40101, "auth"), ConnectionError()],
)
def test_registry_outage_is_retryable(error: Exception) -> None:
    with pytest.raises(RetryableError):
        SchemaRegistry("http://registry", client=FakeRegistryClient({}, error)).fetch(1)


def test_config_topics_and_schema_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
    with pytest.raises(ConfigError) as info:
        Decoder(source([{"name": "p", "format": "avro", "schema": str(bad)}]), "bridge.yaml")
    assert info.value.problems[0].startswith("bridge.yaml: source.topics[0] (p).schema: ")
    assert "is not a valid Avro schema" in info.value.problems[0]
    with pytest.raises(ValueError, match=r"source.topics\[0\] \(a\): format avro without a schema needs"):
        SourceConfig.model_validate({"topics": [{"name": "a", "format": "avro"}]})
    with pytest.raises(ValueError, match=r"source.topics\[0\] \(j\).schema: only for format avro"):
        SourceConfig.model_validate({"topics": [{"name": "j", "schema": "x.avsc"}]})
    assert SourceConfig.model_validate(
        {"topics": ["a", "b"], "format": "avro", "schema_registry": {"url": "http://r"}}
    ).topic_names == ["a", "b"]


@pytest.mark.parametrize("name", ["booking_abandoned", "booking_confirmed", "app_reminder"])
def test_shipped_schemas_parse_and_carry_the_event_type(name: str) -> None:
    schema = json.loads((ROOT / "schemas" / f"{name}.avsc").read_text())
    fastavro.parse_schema(schema)
    type_field = next(f for f in schema["fields"] if f["name"] == "type")
    assert type_field["default"] == name


RECURSIVE = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}


@pytest.mark.parametrize(
    ("levels", "depth", "outcome"),
    [
        (63, 64, "read"),
        (64, 64, "deeper than 64"),
        (2000, 64, "deeper than 64"),
        (30_000, 64, "deeper than 64"),
        (9, 10, "read"),
        (10, 10, "deeper than 10"),
    ],
)
def test_a_recursive_schema_is_read_within_the_depth_bound(levels: int, depth: int, outcome: str) -> None:
    """30,000 levels killed the process in fastavro's C reader (SIGSEGV); 2,000 raised
    RecursionError past the record path."""
    reader = Reader(fastavro.parse_schema(RECURSIVE), depth)
    data = b"\x02" * levels + b"\x00"
    if outcome == "read":
        event = reader.read(data)
        for _ in range(levels):
            event = event["next"]
        assert event == {"next": None}
    else:
        with pytest.raises(DecodeError, match=outcome):
            reader.read(data)


def test_item_counts_are_bounded_by_the_bytes_left() -> None:
    """An array of null with a count of 2^40 (six bytes) allocated about 1 GB."""
    array = {"name": "a", "type": {"type": "array", "items": "null"}}
    nulls = {"type": "record", "name": "N", "fields": [array]}
    reader = Reader(fastavro.parse_schema(nulls))
    assert reader.read(avro_long(3) + b"\x00") == {"a": [None, None, None]}
    with pytest.raises(DecodeError, match="zero-size items"):
        reader.read(avro_long(2**40) + b"\x00")
    tree = {
        "type": "record",
        "name": "T",
        "fields": [{"name": "kids", "type": {"type": "array", "items": "T"}}, {"name": "n", "type": "int"}],
    }
    with pytest.raises(DecodeError, match="a block of 1099511627776 items with 0 bytes left"):
        Reader(fastavro.parse_schema(tree)).read(avro_long(2**40))


def test_a_bounded_schema_is_read_by_the_c_reader_alone() -> None:
    assert bounded_walk(fastavro.parse_schema(ALL_TYPES)) is None
    assert bounded_walk(fastavro.parse_schema(RECURSIVE)) is not None


def test_the_registry_cache_is_bounded() -> None:
    schema = json.dumps({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]})
    client = FakeRegistryClient({n: schema for n in range(MAX_SCHEMAS + 10)})
    registry = SchemaRegistry("http://registry", client=client)
    for schema_id in range(MAX_SCHEMAS + 10):
        registry.fetch(schema_id)
    assert len(registry) == MAX_SCHEMAS
    assert registry.cached(MAX_SCHEMAS + 9) is not None and registry.cached(0) is None  # the oldest left
    for schema_id in range(10**6, 10**6 + MAX_NOT_FOUND + 10):  # ids no registry knows
        with pytest.raises(DecodeError):
            registry.fetch(schema_id)
    assert len(registry) == MAX_SCHEMAS + MAX_NOT_FOUND


def test_a_schema_nested_past_the_recursion_limit_is_a_dead_letter_not_a_crash() -> None:
    deep = '"string"'
    for n in range(5000):
        deep = f'{{"type": "record", "name": "R{n}", "fields": [{{"name": "f", "type": {deep}}}]}}'
    client = FakeRegistryClient({1: deep})
    registry = SchemaRegistry("http://registry", client=client)
    with pytest.raises(DecodeError, match="not a valid Avro schema"):
        registry.fetch(1)
    with pytest.raises(DecodeError):
        registry.cached(1)  # remembered: not asked again for a while


@pytest.mark.parametrize(
    "schema",
    [
        ["null", RECURSIVE],  # a union at the top level
        {"type": "array", "items": RECURSIVE},
        {"type": "map", "values": RECURSIVE},
    ],
)
def test_a_schema_whose_top_level_is_not_a_record_never_reaches_the_c_reader(schema: Any) -> None:
    """Its named types are not where the bounds look for them: 30,000 levels under such a
    top level killed the process (SIGSEGV) before the record check after the read."""
    reader = Reader(fastavro.parse_schema(schema))
    with pytest.raises(DecodeError, match="top level is not a record"):
        reader.read(b"\x02" * 30_001 + b"\x00")


def test_an_error_type_is_bounded_as_a_record() -> None:
    error = {"type": "error", "name": "E", "fields": [{"name": "next", "type": ["null", "E"]}]}
    top = {"type": "record", "name": "T", "fields": [{"name": "e", "type": error}]}
    reader = Reader(fastavro.parse_schema(top))
    with pytest.raises(DecodeError, match="deeper than 64"):
        reader.read(b"\x02" * 30_000 + b"\x00")
    array = {"name": "x", "type": {"type": "array", "items": "null"}}
    nulls = {"type": "error", "name": "N", "fields": [array]}
    top = {"type": "record", "name": "U", "fields": [{"name": "e", "type": nulls}]}
    reader = Reader(fastavro.parse_schema(top))
    with pytest.raises(DecodeError, match="zero-size items"):
        reader.read(avro_long(2**34) + b"\x00")


def test_a_type_named_in_many_places_is_measured_once() -> None:
    """T_i = {a: T_(i-1), b: T_(i-1)}: measured per reference, 30 levels took 2^30 steps."""
    schema: Any = {"type": "record", "name": "T0", "fields": [{"name": "v", "type": "int"}]}
    for level in range(1, 31):
        fields = [{"name": "a", "type": schema}, {"name": "b", "type": f"T{level - 1}"}]
        schema = {"type": "record", "name": f"T{level}", "fields": fields}
    reader = Reader(fastavro.parse_schema(schema))  # in milliseconds (the test's own timeout: 300 s)
    assert bounded_walk(reader.schema) is None


def test_the_loader_builds_the_registry_client_only_where_a_topic_needs_it() -> None:
    """The decoder built it inside its constructor; the loader now hands it in."""
    registry = {"url": "https://registry.example.com", "basic_auth": "bob:pw"}
    plain = {"name": "p", "format": "avro", "schema": str(ROOT / "schemas/app_reminder.avsc")}
    framed = SourceConfig.model_validate(
        {"topics": ["j", {"name": "a", "format": "avro"}], "schema_registry": registry}
    )
    built = registry_for(framed)
    assert isinstance(built, SchemaRegistry) and built._max_depth == framed.avro_max_depth
    assert (
        registry_for(SourceConfig.model_validate({"topics": ["j", plain], "schema_registry": registry}))
        is None
    )
    assert registry_for(SourceConfig.model_validate({"topics": ["j"]})) is None


DECIMALS = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Money",
        "fields": [
            {
                "name": "value",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            },
            {
                "name": "padded",
                "type": {"type": "fixed", "name": "F", "size": 16, "logicalType": "decimal", "precision": 12},
            },
        ],
    }
)


def test_a_decimal_larger_than_its_precision_allows_is_refused_before_it_is_converted() -> None:
    """Turning a large int into a Decimal is quadratic (a 1 MB decimal held the loop for more
    than a minute): what its precision cannot hold is a DecodeError, whatever its size."""
    reader = Reader(DECIMALS)
    padded = (-42).to_bytes(16, "big", signed=True)  # a fixed is padded with sign bytes
    exact = (10**12 - 1).to_bytes(6, "big")
    assert reader.read(avro_long(6) + exact + padded) == {"value": "9999999999.99", "padded": "-42"}
    for size in (7, 20_000, 1_000_000):
        value = avro_long(size) + b"\x01" * size + padded
        with pytest.raises(DecodeError, match=f"a decimal of {size} bytes: more than precision 12 allows"):
            reader.read(value)
    huge = {"type": "bytes", "logicalType": "decimal", "precision": 10**9}
    fields = [{"name": "v", "type": huge}]
    many_digits = fastavro.parse_schema({"type": "record", "name": "Huge", "fields": fields})
    with pytest.raises(DecodeError, match="more than precision 1000000000 allows"):
        Reader(many_digits).read(avro_long(20_000) + b"\x01" * 20_000)  # capped at 4300 digits
