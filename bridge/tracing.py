"""W3C trace context (https://www.w3.org/TR/trace-context/) for records and requests.

A record that carries a valid ``traceparent`` header continues that trace: its span is a
child of the header's, and each request sent to Intilery for it is a child of the
record's span, with a ``traceparent`` of its own (``tracestate`` passed on as received when
it is valid by the specification's grammar, else dropped and the ``traceparent`` kept: so
every header sent is printable ASCII by construction).
A record without one (or with one that does not parse) starts a trace of its own, sampled
at ``observability.tracing.sample_ratio`` by its trace id (as OpenTelemetry's
``ParentBased(TraceIdRatioBased)``: a continued trace keeps its sampled flag). The
ids are what log lines carry (``trace_id``, ``span_id``) and what spans are exported with
(:mod:`bridge.spans`), so a trace, a log line and an audit entry name the same thing.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field

TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
MAX_TRACESTATE = 512  # the specification's limit a vendor may rely on: longer is dropped
MAX_TRACESTATE_MEMBERS = 32
# A list member: a simple key or tenant@system, "=", a value of printable ASCII without
# "," or "=" that does not end in a space (the specification's ABNF, section 3.3.1).
_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_IDS = random.Random()  # seeded from os.urandom; its own, whoever seeds the module's


def new_span_id() -> str:
    """Random, as OpenTelemetry's ``RandomIdGenerator`` makes them (``os.urandom`` lets the
    Kafka thread take the GIL in the middle of every record); never all zeros."""
    return f"{_IDS.getrandbits(64) or 1:016x}"


@dataclass(slots=True)  # not frozen: two spans a record, and a frozen one costs 4 times as much to make
class Span:
    """A span's place: its trace, its id, its parent's (None: the trace's root), the
    trace flags (``01``: sampled), the ``tracestate`` passed on, and when it started.
    Never changed once made."""

    trace_id: str
    span_id: str
    parent_id: str | None = None
    flags: str = "01"
    state: str | None = None
    started_ns: int = field(default_factory=time.time_ns, compare=False)  # Unix time, ns

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1

    def child(self) -> Span:
        return Span(self.trace_id, new_span_id(), self.span_id, self.flags, self.state)

    def headers(self) -> dict[str, str]:
        """The headers that carry this span to whom it calls."""
        found = {TRACEPARENT: f"00-{self.trace_id}-{self.span_id}-{self.flags}"}
        if self.state:
            found[TRACESTATE] = self.state
        return found

    def fields(self) -> dict[str, str]:
        """For log lines."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}


def new_trace(sample_ratio: float = 1.0) -> Span:
    """The root of a new trace, sampled when the low 64 bits of its id are below
    ``sample_ratio`` of their range."""
    trace_id = f"{_IDS.getrandbits(128) or 1:032x}"
    sampled = sample_ratio >= 1 or int(trace_id[16:], 16) < round(sample_ratio * 2**64)
    return Span(trace_id, new_span_id(), None, "01" if sampled else "00")


def parent_of(headers: list[tuple[str, bytes | None]]) -> Span | None:
    """The span a record's ``traceparent`` header names (with its ``tracestate``), or None
    when it has none that parses (an invalid one is ignored, as the specification says)."""
    parent = state = None
    for name, value in headers:
        if value is None or len(value) > MAX_TRACESTATE:
            continue
        lowered = name.lower()
        if lowered == TRACEPARENT and parent is None:
            parent = _parsed(value)
        elif lowered == TRACESTATE and state is None:
            state = valid_tracestate(value)
    if parent is None:
        return None
    return Span(parent[0], parent[1], None, parent[2], state or None)


def valid_tracestate(value: bytes) -> str:
    """The ``tracestate`` to pass on: its list members (empty ones left out), or ``""`` when
    any member breaks the grammar or there are more than 32 (a vendor that cannot parse it
    must not propagate it)."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return ""
    members = [member.strip(" \t") for member in text.split(",")]
    members = [member for member in members if member]
    if len(members) > MAX_TRACESTATE_MEMBERS or not all(_MEMBER.fullmatch(m) for m in members):
        return ""
    return ",".join(members)


def _parsed(value: bytes) -> tuple[str, str, str] | None:
    try:
        text = value.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    match = _TRACEPARENT.match(text)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def record_span(headers: list[tuple[str, bytes | None]], sample_ratio: float = 1.0) -> Span:
    """A record's span: a child of its ``traceparent``'s, else the root of a new trace
    (sampled at ``sample_ratio``)."""
    parent = parent_of(headers)
    return parent.child() if parent is not None else new_trace(sample_ratio)
