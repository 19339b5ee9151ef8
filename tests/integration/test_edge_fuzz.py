"""The fuzzing harness at the edges (tests/edgefuzz.py), in the fast tier: records produced
through librdkafka with any header names, keys and values, read by the consumer's code and
then the record path; any answer from a hostile Intilery read by the real client. make fuzz
runs the same drivers for longer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.model import Record
from tests import edgefuzz, fuzzing
from tests.hostile import Answer
from tests.support import sms_event
from tests.unit.test_fuzz_record_path import records

EDGE_EVENT = Record(fuzzing.JSON_TOPIC, 0, 0, b"C-9", json.dumps(sms_event(9, 1)).encode(), [], None)
EDGE = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def kafka_edge() -> Iterator[edgefuzz.KafkaEdge]:
    edge = edgefuzz.KafkaEdge()
    yield edge
    edge.close()


@pytest.fixture(scope="module")
def intilery_edge() -> Iterator[edgefuzz.IntileryEdge]:
    edge = edgefuzz.IntileryEdge()
    yield edge
    edge.close()


@pytest.fixture(scope="module")
def registry_edge() -> Iterator[edgefuzz.RegistryEdge]:
    edge = edgefuzz.RegistryEdge()
    yield edge
    edge.close()


def _with_names(record: Record, names: list[bytes]) -> tuple[Record, list[tuple[bytes, bytes | None]]]:
    return record, edgefuzz.raw_headers(record, names)


produced = st.builds(_with_names, records, st.lists(edgefuzz.header_names, min_size=3, max_size=3))


@EDGE
@given(batch=st.lists(produced, min_size=1, max_size=3))
@example(batch=[(EDGE_EVENT, [(b"\xff\xfe", b"x"), (b"tracestate", "v=café".encode())])])
def test_any_record_a_producer_writes_ends_delivered_or_dead_lettered(
    kafka_edge: edgefuzz.KafkaEdge, batch: list[tuple[Record, list[tuple[bytes, bytes | None]]]]
) -> None:
    kafka_edge.check(batch)


@EDGE
@given(answer=edgefuzz.answers)
@example(answer=Answer(503, [(b"Retry-After", b"315360000")], b""))
@example(answer=Answer(429, [(b"Retry-After", b"inf")], b""))
@example(answer=Answer(200, [], b'{"success": true, "eventId": "evt-\\udce9"}'))
@example(answer=Answer(200, [(b"X-\xff", b"\x00")], b"{}"))
@example(answer=Answer(200, [], b"[" * 100_000))
@example(answer=Answer(200, [(b"Content-Length", b"-5")], b""))
@example(answer=Answer(100, [], b""))  # a 100 Continue, then nothing: the request hung for ever
def test_any_answer_from_intilery_is_classified_and_bounded(
    intilery_edge: edgefuzz.IntileryEdge, answer: Answer
) -> None:
    intilery_edge.check(answer)


@EDGE
@given(answer=edgefuzz.registry_answers)
@example(answer=Answer(200, [], b'{"schema": ' + b"[" * 5000))
def test_any_answer_from_the_schema_registry_is_a_schema_or_a_known_error(
    registry_edge: edgefuzz.RegistryEdge, answer: Answer
) -> None:
    registry_edge.check(answer)
