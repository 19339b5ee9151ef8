"""The record path fuzzed (``tests/fuzzing.py``: real decoders, rules, templates and
dead-letter writer behind fakes for Kafka and Intilery): whatever a record carries, the
path never raises, every record ends delivered, skipped or dead-lettered with the commit
at every partition's end, every good event is delivered once, and every dead letter
encodes and fits 1 MB. Also replays every input kept in ``tests/corpus/`` (the hostile
kinds found by hand and what ``make fuzz`` found)."""

from __future__ import annotations

import json
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.model import Record
from tests import fuzzing

HARNESS = fuzzing.harness()
SLOW_OK = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(st.characters() | surrogates, max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01", "1" * 401, "2026-13-01"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=15,
)
fields = st.sampled_from(["type", "channel", "customer", "booking", "occurredAt", "seq", "id", "value"])
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["booking_abandoned", "customer_registered", "letter", "app_reminder", "?"])},
    optional={
        "channel": st.sampled_from(["sms", "email", 3]),
        "customer": st.fixed_dictionaries({}, optional={"id": json_values, "email": json_values}),
        "booking": st.fixed_dictionaries({}, optional={"id": json_values, "value": json_values}),
        "occurredAt": json_values,
        "seq": json_values,
    },
).flatmap(lambda base: st.dictionaries(fields, json_values, max_size=3).map(lambda extra: {**extra, **base}))


def _json_text(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _duplicated(event: dict[str, Any]) -> bytes:
    """The same key twice: the last one wins in Python's reader."""
    text = _json_text(event)
    return b'{"type": "booking_abandoned", ' + text[1:] if text != b"{}" else text


def _deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + b"1" + closer * depth


json_bytes = st.one_of(
    events.map(_json_text),
    events.map(_duplicated),
    json_values.map(_json_text),
    st.integers(1, 30_000).map(lambda n: _deep(n, b'{"a":', b"}")),
    st.integers(1, 30_000).map(lambda n: _deep(n, b"[", b"]")),
    st.binary(max_size=200),
)


def _avro_event(schema: Any, value: Any) -> bytes:
    import io

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"next": None}
    for _ in range(depth):
        node = {"next": node}
    return node


avro_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(0, 40_000).map(lambda n: b"\x02" * n + b"\x00"),  # recursive: n levels
    st.integers(0, 90).map(lambda n: _avro_event(fuzzing.RECURSIVE, _nested(n))),
    st.tuples(st.binary(max_size=60), st.integers(0, 2**62)).map(
        lambda pair: pair[0][:3] + fuzzing.avro_long(pair[1]) + pair[0][3:]  # a huge count or length inside
    ),
)


schema_ids = st.sampled_from([*fuzzing.SCHEMA_IDS, 0, 99, 2**32 - 1])
headers = st.lists(st.tuples(texts, st.none() | st.binary(max_size=40)), max_size=3)
keys = st.none() | st.binary(max_size=20)
timestamps = st.none() | st.integers(-(2**63), 2**63 - 1)


def _records(topic: str, values: st.SearchStrategy[bytes | None]) -> st.SearchStrategy[Record]:
    return st.builds(
        lambda key, value, hs, ts: Record(topic, 0, 0, key, value, hs, ts), keys, values, headers, timestamps
    )


records = st.one_of(
    _records(fuzzing.JSON_TOPIC, json_bytes | st.none()),
    _records(
        fuzzing.AVRO_TOPIC,
        st.builds(fuzzing.framed, schema_ids, avro_bodies) | st.binary(max_size=8) | st.none(),
    ),
    _records(fuzzing.PLAIN_TOPIC, avro_bodies),
)


@SLOW_OK
@given(batch=st.lists(records, min_size=1, max_size=4))
def test_no_record_breaks_the_record_path(batch: list[Record]) -> None:
    HARNESS.check(batch)


@SLOW_OK
@given(batch=st.lists(_records(fuzzing.JSON_TOPIC, events.map(_json_text)), min_size=1, max_size=4))
def test_no_event_breaks_the_rules(batch: list[Record]) -> None:
    HARNESS.check(batch)


KEPT = fuzzing.load_corpus()


@pytest.mark.parametrize(("name", "batch"), KEPT, ids=[name for name, _ in KEPT])
def test_every_kept_input_is_delivered_or_dead_lettered(name: str, batch: list[Record]) -> None:
    outcome = HARNESS.check(batch)
    assert outcome["records"] == 2 * len(batch) + 1


def test_the_corpus_holds_the_known_hostile_kinds() -> None:
    notes = {fuzzing.read_kept(path)["note"] for path in fuzzing.CORPUS.glob("*.json*")}
    assert len(notes) >= 10, notes
