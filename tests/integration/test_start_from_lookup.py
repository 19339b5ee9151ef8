"""source.start_from's time look-up failing: retried, and when it keeps failing the
bridge stops naming the partitions; a failed look-up never reads as "no record since
that time" (which would skip to the end). On librdkafka's mock cluster: only it can
make ListOffsets fail on request."""

from __future__ import annotations

import time

import pytest

from bridge.kafka.consumer import TIME_LOOKUP_TRIES, consumer_config
from bridge.kafka.listener import SourceListener
from bridge.kafka.source import Source
from bridge.model import TopicPartitionKey
from tests.support import TestKafka

LIST_OFFSETS, TOPIC_AUTHORIZATION_FAILED = 2, 29


def start(mock_cluster: TestKafka, failures: int) -> tuple[Source, set[TopicPartitionKey]]:
    """The source, once it failed or read both partitions to their end (those at their end)."""
    mock_cluster.create_topic(mock_cluster.topic, 2)
    mock_cluster.backend.push_request_errors(LIST_OFFSETS, [TOPIC_AUTHORIZATION_FAILED] * failures)
    conf = consumer_config(
        {"bootstrap.servers": mock_cluster.bootstrap_servers, "group.id": mock_cluster.name("g")},
        "2026-01-01T00:00:00Z",
    )
    source = Source(conf, [mock_cluster.topic], SourceListener(), start_at_ms=1)
    source.start()
    deadline, at_end = time.monotonic() + 20, set[TopicPartitionKey]()
    while source.fatal is None and len(at_end) < 2:
        assert time.monotonic() < deadline, "neither assigned nor failed in 20 s"
        at_end |= {key for key, end in source.fetch(10).ends.items() if end}
        time.sleep(0.02)
    return source, at_end


@pytest.mark.parametrize("failures", [1, TIME_LOOKUP_TRIES - 1])
def test_a_look_up_failing_for_a_while_is_retried(mock_cluster: TestKafka, failures: int) -> None:
    source, at_end = start(mock_cluster, failures)
    try:
        assert source.fatal is None and at_end == {(mock_cluster.topic, 0), (mock_cluster.topic, 1)}
    finally:
        source.close()


def test_a_look_up_that_keeps_failing_stops_the_bridge_naming_the_partitions(mock_cluster: TestKafka) -> None:
    source, _ = start(mock_cluster, TIME_LOOKUP_TRIES)
    try:
        topic = mock_cluster.topic
        assert source.fatal is not None
        assert source.fatal.startswith("source.start_from: the time look-up failed")
        assert f"{topic}[0]: " in source.fatal and f"{topic}[1]: " in source.fatal
        assert "Topic authorization failed" in source.fatal
    finally:
        source.close()
