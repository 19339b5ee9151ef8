"""The consumer's pause state survives rebalances. librdkafka keeps a
partition's pause across revocation and reassignment, and a pause inside the
assignment callback before the assignment is lost, so the source applies its
own state on every assignment."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bridge.kafka.consumer import consumer_config
from bridge.kafka.listener import SourceListener
from bridge.kafka.source import Source
from tests.support import GROUP_PROTOCOLS, CheckedProducer, TestKafka, with_protocol


def spin(
    source: Source,
    other: Consumer | None,
    until: Callable[[], bool],
    timeout: float = 30,
    each: Callable[[], None] = lambda: None,
) -> int:
    fetched, deadline = 0, time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        fetched += len(source.fetch(100).records)
        each()
        if other is not None:
            other.consume(100, timeout=0.01)
        time.sleep(0.01)
    return fetched


def setup(cluster: TestKafka, strategy: str) -> tuple[Source, dict[str, object], CheckedProducer]:
    cluster.create_topic(cluster.topic, 2)
    conf = consumer_config(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": cluster.name("g"),
            "auto.offset.reset": "earliest",
            **with_protocol({"session.timeout.ms": 6000, "heartbeat.interval.ms": 300}, strategy),
        },
    )
    source = Source(conf, [cluster.topic], SourceListener())
    source.start()
    spin(source, None, lambda: len(source.assigned) == 2)
    return source, conf, CheckedProducer(cluster.bootstrap_servers)


def produce(producer: CheckedProducer, topic: str, count: int = 20) -> None:
    for i in range(count):
        producer.produce(topic, value=b"x", partition=i % 2)
    producer.flush()


def fetch_until(source: Source, count: int, timeout: float = 20) -> None:
    fetched, deadline = 0, time.monotonic() + timeout
    while fetched < count:
        assert time.monotonic() < deadline, f"fetched {fetched} of {count}: still paused"
        fetched += len(source.fetch(100).records)
        time.sleep(0.01)


def fetched_while_read_elsewhere(source: Source, cluster: TestKafka, count: int) -> int:
    """What ``source`` fetches while a reader of another group reads the topic's ``count``
    records: the records were there to fetch all along."""
    reader = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": cluster.name("reader")})
    reader.assign([TopicPartition(cluster.topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    read = fetched = 0
    deadline = time.monotonic() + 30
    try:
        while read < count:
            assert time.monotonic() < deadline, f"the reader read {read} of {count}"
            read += sum(1 for m in reader.consume(100, timeout=0.05) if m.error() is None)
            fetched += len(source.fetch(100).records)
    finally:
        reader.close()
    return fetched


@pytest.mark.parametrize("strategy", GROUP_PROTOCOLS)
def test_partitions_assigned_while_paused_stay_paused(cluster: TestKafka, strategy: str) -> None:
    source, conf, producer = setup(cluster, strategy)
    other = Consumer(conf)
    other.subscribe([cluster.topic])
    spin(source, other, lambda: len(source.assigned) == 1)
    source.pause(True)  # only the partition it holds now
    other.close()
    spin(source, None, lambda: len(source.assigned) == 2)  # the other one arrives while paused
    produce(producer, cluster.topic)
    assert fetched_while_read_elsewhere(source, cluster, 20) == 0
    source.pause(False)
    fetch_until(source, 20)
    source.close()


@pytest.mark.parametrize("strategy", ["eager"])  # only an eager revocation leaves it with nothing
def test_resume_while_unassigned_applies_on_reassignment(cluster: TestKafka, strategy: str) -> None:
    source, conf, producer = setup(cluster, strategy)
    source.pause(True)
    other = Consumer(conf)
    other.subscribe([cluster.topic])

    def resume_when_empty() -> None:  # what the pipeline does once revoked work is dropped
        if not source.assigned and source.paused:
            source.pause(False)

    spin(source, other, lambda: len(source.assigned) == 1 and not source.paused, each=resume_when_empty)
    other.close()
    spin(source, None, lambda: len(source.assigned) == 2)
    produce(producer, cluster.topic)
    fetch_until(source, 20)
    source.close()


class Counted(SourceListener):
    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.source: Source | None = None

    def partitions_counted(self) -> None:
        assert self.source is not None
        self.totals.append(self.source.partitions_total)


@pytest.mark.parametrize("strategy", GROUP_PROTOCOLS)
def test_partitions_are_counted_after_each_assignment_outside_its_callback(
    cluster: TestKafka, strategy: str
) -> None:
    """The rate share needs every partition of the topics. Counting them (list_topics)
    inside the assignment callback ended the client's call state, and the next callback
    the same consume() served (here: a debug log line, there are many) aborted the
    process; now they are counted once consume() returns, on every assignment."""
    cluster.create_topic(cluster.topic, 3)
    conf = consumer_config(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": cluster.name("g"),
            "debug": "cgrp,consumer",  # a log callback in every consume() around a rebalance
            "log_level": 7,
            **with_protocol({"session.timeout.ms": 6000, "heartbeat.interval.ms": 300}, strategy),
        },
    )
    listener = Counted()
    source = listener.source = Source(conf, [cluster.topic], listener, count_partitions=True)
    source.start()
    spin(source, None, lambda: len(source.assigned) == 3)
    other = Consumer({key: value for key, value in conf.items() if key not in ("debug", "log_level")})
    other.subscribe([cluster.topic])
    spin(source, other, lambda: 0 < len(source.assigned) < 3)
    other.close()
    spin(source, None, lambda: len(source.assigned) == 3)
    source.close()
    assert len(listener.totals) >= 2 and set(listener.totals) == {3}, listener.totals
