"""Spans over OTLP/HTTP (``observability.tracing.otlp_endpoint``), with the OpenTelemetry
SDK's span type and its OTLP exporter: one span per record (read to finished: topic,
partition, offset, outcome), one per request to Intilery (rule, command, status, attempt,
latency), in batch mode one per batch request instead (linked to its records' spans). Their ids are
those of :mod:`bridge.tracing`, so a span, a log line and an audit entry name the same
thing; a record whose ``traceparent`` says not sampled is not exported.

Exporting never slows or stops delivery: spans wait in a bounded queue that a thread of
its own sends in batches; a full queue (a slow or dead collector) drops the newest,
counted in ``intilery_bridge_spans_dropped_total`` and logged once (``spans_dropped``),
as is a batch the collector refused. No customer data: no merge fields, no userId.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import structlog
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

from bridge import __version__
from bridge.tracing import Span

log = structlog.get_logger("bridge.spans")

QUEUE = 4096  # spans waiting at most
BATCH = 512  # spans per export at most
EVERY_S = 1.0  # how often the queue is sent
SCOPE = InstrumentationScope("intilery-bridge", __version__)


def _context(trace_id: str, span_id: str, flags: str = "01", remote: bool = False) -> SpanContext:
    return SpanContext(int(trace_id, 16), int(span_id, 16), remote, TraceFlags(int(flags, 16)))


class Spans:
    def __init__(
        self,
        endpoint: str,
        dropped: Callable[[int], None],
        timeout_s: float = 5.0,
        queue: int = QUEUE,
    ) -> None:
        self._exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
        self._room = queue
        self._resource = Resource.create({"service.name": "intilery-bridge", "service.version": __version__})
        self._queue: deque[ReadableSpan] = deque()
        self._dropped, self._said = dropped, False
        self._wake, self._stopping = threading.Event(), False
        # The exporter retries and warns on its own; its failures are counted and said here.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._run, name="spans", daemon=True)
        self._thread.start()

    # --- the spans ---------------------------------------------------------------------

    def record(self, span: Span, end_ns: int, topic: str, partition: int, offset: int, outcome: str) -> None:
        if not span.sampled:
            return
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "bridge.outcome": outcome,
        }
        error = outcome in ("dead_lettered", "failed")
        self._add(span, f"process {topic}", SpanKind.CONSUMER, end_ns, attributes, error)

    def request(
        self,
        span: Span,
        rule: str,
        command: str,
        action: str,
        status: int | None,
        attempt: int,
        latency_ms: float,
    ) -> None:
        if not span.sampled:
            return
        attributes: dict[str, str | int | float] = {
            "bridge.rule": rule,
            "bridge.command": command,
            "bridge.attempt": attempt,
            "bridge.latency_ms": round(latency_ms, 1),
        }
        self._post(span, f"/v1/{action}", status, attributes)

    def batch(self, span: Span, members: Sequence[Span], status: int | None, calls: int) -> None:
        """``members``: the spans of the records whose commands it carries, linked to (those
        sampled)."""
        if not span.sampled:
            return
        links = [Link(_context(m.trace_id, m.span_id, m.flags)) for m in members if m.sampled]
        self._post(span, "/v1/batch", status, {"bridge.calls": calls}, links)

    def _post(
        self,
        span: Span,
        path: str,
        status: int | None,
        attributes: dict[str, str | int | float],
        links: Sequence[Link] = (),
    ) -> None:
        """A request's span, ending now; an error without an answer or with a 4xx/5xx."""
        attributes = {"http.request.method": "POST", "url.path": path, **attributes}
        if status is not None:
            attributes["http.response.status_code"] = status
        failed = status is None or status >= 400
        self._add(span, f"POST {path}", SpanKind.CLIENT, time.time_ns(), attributes, failed, links)

    def _add(
        self,
        span: Span,
        name: str,
        kind: SpanKind,
        end_ns: int,
        attributes: Attributes,
        error: bool,
        links: Sequence[Link] = (),
    ) -> None:
        if not span.sampled:
            return
        parent = _context(span.trace_id, span.parent_id, span.flags, True) if span.parent_id else None
        readable = ReadableSpan(
            name=name,
            context=_context(span.trace_id, span.span_id, span.flags),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            links=links,
            kind=kind,
            status=Status(StatusCode.ERROR if error else StatusCode.UNSET),
            start_time=span.started_ns,
            end_time=end_ns,
            instrumentation_scope=SCOPE,
        )
        if len(self._queue) >= self._room:
            self._drop(1, "the queue is full: the collector is slow or away")
            return
        self._queue.append(readable)
        if len(self._queue) >= BATCH:
            self._wake.set()

    # --- sending -----------------------------------------------------------------------

    def _drop(self, count: int, reason: str) -> None:
        self._dropped(count)
        if not self._said:
            self._said = True
            log.warning("spans_dropped", reason=reason, count=count)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(EVERY_S)
            self._wake.clear()
            self._send()

    def _send(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                result = self._exporter.export(batch)
            except Exception as exc:  # the exporter's own failure: never delivery's
                self._drop(len(batch), f"{type(exc).__name__}: {exc}"[:200])
                continue
            if result is not SpanExportResult.SUCCESS:
                self._drop(len(batch), "the collector refused or did not answer")

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what waits (within ``timeout_s``), then stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._send()
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
