"""Spans over OTLP/HTTP against a local receiver that decodes the real protocol: ids,
parents, links and attributes as sent; a slow or absent collector costs spans (counted,
said once), never the caller's time; a trace its producer did not sample is not exported."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from bridge.spans import Spans
from bridge.tracing import Span, new_trace, record_span
from tests import support
from tests.otlp import Receiver

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def wait_for(receiver: Receiver, count: int) -> None:
    """Until the collector has ``count`` spans; fails, rather than giving up silently."""
    support.wait_for(lambda: len(receiver.spans) >= count, 10, f"{count} spans at the collector")


def test_record_request_and_batch_spans_arrive_as_sent() -> None:
    dropped: list[int] = []
    with Receiver() as receiver:
        spans = Spans(receiver.url, dropped.append)
        record = record_span([("traceparent", f"00-{TRACE}-{PARENT}-01".encode())])
        request = record.child()
        spans.request(request, "abandoned-sms", "send_sms", "track", 200, 1, 12.5)
        spans.record(record, time.time_ns(), "bookings", 2, 41, "delivered")
        batch = new_trace()
        unsampled = Span(TRACE, "2" * 16, PARENT, "00")  # not exported: not linked to either
        spans.batch(batch, [record, unsampled], 200, 2)  # linked to the records whose commands it carries
        spans.close()
        wait_for(receiver, 3)
    by_name = {span["name"]: span for span in receiver.spans}
    assert set(by_name) == {"process bookings", "POST /v1/track", "POST /v1/batch"} and dropped == []
    processed = by_name["process bookings"]
    posted = by_name["POST /v1/track"]
    batched = by_name["POST /v1/batch"]
    assert (processed["trace_id"], processed["span_id"], processed["parent_span_id"]) == (
        TRACE,
        record.span_id,
        PARENT,
    )
    assert processed["attributes"] == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "bookings",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
        "bridge.outcome": "delivered",
    }
    assert (posted["trace_id"], posted["parent_span_id"]) == (TRACE, record.span_id)
    assert posted["attributes"]["http.response.status_code"] == 200
    assert (
        posted["attributes"]["bridge.rule"] == "abandoned-sms" and posted["attributes"]["bridge.attempt"] == 1
    )
    assert batched["trace_id"] == batch.trace_id and batched["links"] == [(TRACE, record.span_id)]
    assert receiver.resources[0]["service.name"] == "intilery-bridge"
    assert processed["start"] <= processed["end"] and processed["scope"] == "intilery-bridge"


def test_a_span_its_producer_did_not_sample_is_not_exported() -> None:
    with Receiver() as receiver:
        spans = Spans(receiver.url, lambda _: None)
        spans.record(Span(TRACE, "1" * 16, PARENT, "00"), time.time_ns(), "bookings", 0, 1, "skipped")
        spans.record(new_trace(), time.time_ns(), "bookings", 0, 2, "skipped")
        spans.record(new_trace(sample_ratio=0.0), time.time_ns(), "bookings", 0, 3, "skipped")  # nor ours
        spans.close()
        wait_for(receiver, 1)
    assert [span["attributes"]["messaging.kafka.offset"] for span in receiver.spans] == [2]


def test_a_slow_collector_costs_spans_never_the_callers_time() -> None:
    dropped: list[int] = []
    with Receiver(delay_s=1.0) as receiver, capture_logs() as logs:
        spans = Spans(receiver.url, dropped.append, timeout_s=5, queue=5)
        for offset in range(40):  # queued at once: the first batch is on its way, slowly
            spans.record(new_trace(), time.time_ns(), "bookings", 0, offset, "delivered")
        assert sum(dropped) >= 35 - 5  # dropped there and then: nothing waited for the collector
        spans.close(timeout_s=5)
    assert 0 < len(receiver.spans) <= 10 and len(receiver.spans) + sum(dropped) == 40
    said = [line for line in logs if line["event"] == "spans_dropped"]
    assert len(said) == 1 and "queue is full" in said[0]["reason"]


def test_an_absent_collector_costs_the_spans_and_says_so_once() -> None:
    dropped: list[int] = []
    with capture_logs() as logs:
        spans = Spans("http://127.0.0.1:9/v1/traces", dropped.append, timeout_s=0.5)
        for offset in range(3):
            spans.record(new_trace(), time.time_ns(), "bookings", 0, offset, "delivered")
        spans.close(timeout_s=5)
    assert sum(dropped) == 3
    assert [line["event"] for line in logs] == ["spans_dropped"]
