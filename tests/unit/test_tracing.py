"""W3C trace context: a record's traceparent continued (its span a child of the header's,
each request a child of the record's), an invalid one ignored as the specification says,
tracestate passed on, and a trace of its own for a record without one."""

from __future__ import annotations

import httpx
import pytest

from bridge.tracing import Span, new_trace, parent_of, record_span

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01".encode()


def test_a_record_continues_its_traceparent_and_passes_its_tracestate_on() -> None:
    span = record_span([("other", b"x"), ("traceparent", VALID), ("tracestate", b"acme=1,b=2")])
    assert (span.trace_id, span.parent_id, span.flags, span.state) == (TRACE, PARENT, "01", "acme=1,b=2")
    assert len(span.span_id) == 16 and span.span_id != PARENT
    request = span.child()  # a request for the record: same trace, a new span, the record's its parent
    assert (request.trace_id, request.parent_id) == (TRACE, span.span_id) and request.span_id != span.span_id
    assert request.headers() == {
        "traceparent": f"00-{TRACE}-{request.span_id}-01",
        "tracestate": "acme=1,b=2",
    }


def test_the_flags_are_kept_and_header_names_are_case_insensitive() -> None:
    span = record_span([("TraceParent", f"00-{TRACE}-{PARENT}-00".encode())])
    assert span.trace_id == TRACE and span.flags == "00" and not span.sampled
    assert span.child().headers()["traceparent"].endswith("-00")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        f"00-{'0' * 32}-{PARENT}-01".encode(),  # an all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01".encode(),  # an all-zero parent
        f"ff-{TRACE}-{PARENT}-01".encode(),  # version ff is invalid
        f"00-{TRACE.upper()}-{PARENT}-01".encode(),  # upper-case hex
        f"00-{TRACE}-{PARENT}-01-extra".encode(),  # version 00 has nothing after the flags
        f"00-{TRACE[:-1]}-{PARENT}-01".encode(),
        b"\xff\xfe",
        None,
    ],
)
def test_an_invalid_traceparent_starts_a_trace_of_its_own(value: bytes | None) -> None:
    assert parent_of([("traceparent", value)]) is None
    span = record_span([("traceparent", value)])
    assert span.parent_id is None and span.trace_id != TRACE and len(span.trace_id) == 32


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    parent = parent_of([("traceparent", f"01-{TRACE}-{PARENT}-01-what-comes-later".encode())])
    assert parent == Span(TRACE, PARENT, None, "01", None)


def test_records_without_a_traceparent_each_start_their_own_trace() -> None:
    traces = {record_span([]).trace_id for _ in range(100)} | {new_trace().trace_id}
    assert len(traces) == 101
    assert new_trace().headers()["traceparent"].startswith("00-")


def test_new_traces_are_sampled_at_the_ratio_by_their_trace_id() -> None:
    """As TraceIdRatioBased: the low 64 bits of the id below the ratio's share of their range."""
    for ratio in (0.0, 0.25, 1.0):
        spans = [record_span([], ratio) for _ in range(2000)]
        assert all(s.sampled == (int(s.trace_id[16:], 16) < ratio * 2**64) for s in spans)
        share = sum(s.sampled for s in spans) / len(spans)
        assert abs(share - ratio) < 0.05, (ratio, share)
        assert all(s.headers()["traceparent"].endswith("-01" if s.sampled else "-00") for s in spans)
    continued = record_span([("traceparent", f"00-{TRACE}-{PARENT}-01".encode())], 0.0)
    assert continued.sampled  # a continued trace keeps its flag whatever the ratio


@pytest.mark.parametrize(
    ("value", "passed_on"),
    [
        (b"acme=1, b=2 ,,c@sys=x y", "acme=1,b=2,c@sys=x y"),  # whitespace and empty members dropped
        ("vendor=café".encode(), None),  # not ASCII: httpx and aiohttp refuse it
        (b"vendor=a\x01b", None),  # a control character
        (b"vendor=a\r\nx-forged: 1", None),  # a header split
        (b"Vendor=1", None),  # keys are lower case
        (b"a=b=c", None),
        (b"a=trailing ", "a=trailing"),  # the member's own space is whitespace around it
        (",".join(f"k{n}=v" for n in range(33)).encode(), None),  # more than 32 members
        (b"k=" + b"v" * 257, None),  # a value of more than 256 characters
    ],
)
def test_a_tracestate_is_passed_on_only_when_valid_and_the_traceparent_is_kept(
    value: bytes, passed_on: str | None
) -> None:
    """The W3C rule: a tracestate that does not parse is not propagated; whatever a record
    carries, the headers sent are encodable (httpx builds the request)."""
    span = record_span([("traceparent", VALID), ("tracestate", value)])
    assert span.trace_id == TRACE and span.parent_id == PARENT
    headers = span.child().headers()
    assert headers.get("tracestate") == passed_on
    httpx.Request("POST", "http://intilery.invalid/", headers=headers)
