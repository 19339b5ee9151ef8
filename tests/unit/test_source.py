"""The consumer side without sockets: where a new group starts (source.start_from)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from structlog.testing import capture_logs

from bridge.config import SourceConfig
from bridge.kafka.commits import Commits
from bridge.kafka.consumer import consumer_config
from bridge.kafka.listener import SourceListener
from bridge.kafka.positions import offset_reset
from bridge.kafka.source import Source
from bridge.model import Position


class FakeConsumer:
    """Answers committed() and offsets_for_times() from tables; records the assignment."""

    def __init__(self, committed: dict[int, int], by_time: dict[int, int]) -> None:
        self._committed, self._by_time = committed, by_time
        self.assigned: list[TopicPartition] = []
        self.asked_times: list[int] = []
        self.commits: list[list[tuple[int, int]]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self._committed.get(tp.partition, -1001))
            for tp in partitions
        ]

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked_times += [tp.offset for tp in partitions]
        return [TopicPartition(tp.topic, tp.partition, self._by_time[tp.partition]) for tp in partitions]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        return 3, 100  # every partition: records 3 to 99

    def list_topics(self, timeout: float) -> Any:
        partitions = dict.fromkeys(range(6))
        return SimpleNamespace(topics={"t": SimpleNamespace(partitions=partitions)})

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    pause = resume


def test_start_from_time_seeks_only_partitions_never_committed() -> None:
    source_config = SourceConfig.model_validate({"topics": ["t"], "start_from": "2026-11-01T00:00:00Z"})
    fake = FakeConsumer(committed={0: 42}, by_time={1: 7, 2: -1})
    source = Source(
        consumer_config({"group.id": "g"}, source_config.start_from),
        ["t"],
        SourceListener(),
        factory=lambda conf: fake,
        start_at_ms=source_config.start_at_ms,
    )
    source._assigned(fake, [TopicPartition("t", p) for p in range(3)])
    # Nothing that late in partition 2: it starts at the end, 100.
    assert [(tp.partition, tp.offset) for tp in fake.assigned] == [(0, -1001), (1, 7), (2, 100)]
    assert fake.asked_times == [1793491200000, 1793491200000]  # 2026-11-01T00:00:00Z in ms
    assert fake.commits == [[(1, 7), (2, 100)]]  # at once: a later member starts there too


@pytest.mark.parametrize(
    ("reset", "expected"), [("earliest", 3), ("smallest", 3), ("latest", 100), (None, 100)]
)
def test_a_partition_never_committed_starts_where_the_policy_says_and_is_committed_there(
    reset: str | None, expected: int
) -> None:
    """Resolved again by the next member, ``latest`` would skip what arrived in between."""
    fake = FakeConsumer(committed={0: 42}, by_time={})
    conf = {"group.id": "g", **({"auto.offset.reset": reset} if reset else {})}
    source = Source(consumer_config(conf), ["t"], SourceListener(), factory=lambda conf: fake)
    with capture_logs() as logs:
        source._assigned(fake, [TopicPartition("t", p) for p in range(2)])
    assert [(tp.partition, tp.offset) for tp in fake.assigned] == [(0, -1001), (1, expected)]
    assert fake.commits == [[(1, expected)]]
    assert [line["positions"] for line in logs if line["event"] == "start_position_committed"] == [
        {"t[1]": expected}
    ]


def test_an_error_policy_and_replay_commit_no_start() -> None:
    fake = FakeConsumer(committed={}, by_time={})
    conf = consumer_config({"group.id": "g", "auto.offset.reset": "error"})
    Source(conf, ["t"], SourceListener(), factory=lambda c: fake)._assigned(fake, [TopicPartition("t", 0)])
    window = [TopicPartition("t", 0, 5)]
    replay = Source({"group.id": "g"}, ["t"], SourceListener(), factory=lambda c: fake, assignment=window)
    replay.start()
    assert fake.commits == [] and [(tp.partition, tp.offset) for tp in fake.assigned] == [(0, 5)]


def test_a_commit_failure_repeated_is_logged_once_per_window() -> None:
    """A moving group coordinator fails every commit for seconds (seen on the three-node
    drill: 190 lines in 4 s); one line per error per 10 s, with how many were held back."""
    commits = Commits(SourceListener())
    waiting = KafkaError(KafkaError._WAIT_COORD)
    with capture_logs() as logs:
        for _ in range(40):
            commits.answered(waiting, [])
            commits.answered(
                None,
                [
                    SimpleNamespace(
                        topic="t", partition=0, offset=5, error=KafkaError(KafkaError.UNKNOWN_MEMBER_ID)
                    )
                ],
            )
    lines = [(entry["error"], entry.get("partition")) for entry in logs if entry["event"] == "commit_failed"]
    assert lines == [(waiting.str(), None), (KafkaError(KafkaError.UNKNOWN_MEMBER_ID).str(), 0)]


def test_a_broker_that_cannot_be_reached_is_logged_as_retried() -> None:
    """librdkafka says retriable: false for it, and retries it without end: the line said
    `retriable: false` for an error the bridge was retrying."""
    source = Source({"group.id": "g"}, ["t"], SourceListener(), factory=lambda conf: FakeConsumer({}, {}))
    unreachable = KafkaError(KafkaError._TRANSPORT, "1/1 brokers are down")
    assert not unreachable.retriable()
    with capture_logs() as logs:
        source._error(unreachable)
    (line,) = [entry for entry in logs if entry["event"] == "kafka_error"]
    assert line["retried"] is True and "retriable" not in line
    assert source.last_error == unreachable.str() and source.fatal is None


def test_start_from_sets_the_reset_policy() -> None:
    assert consumer_config({}, "latest")["auto.offset.reset"] == "latest"
    assert consumer_config({}, "earliest")["auto.offset.reset"] == "earliest"
    assert consumer_config({}, "2026-11-01T00:00:00Z")["auto.offset.reset"] == "earliest"
    assert "auto.offset.reset" not in consumer_config({})


def test_start_from_refuses_nonsense() -> None:
    import pytest

    with pytest.raises(ValueError, match="latest, earliest or an ISO-8601 time"):
        SourceConfig.model_validate({"topics": ["t"], "start_from": "yesterday"})


def test_start_from_latest_seeks_no_time() -> None:
    """`latest` is a reset policy, not a time: nothing is looked up by time for it."""
    assert SourceConfig.model_validate({"topics": ["t"], "start_from": "latest"}).start_at_ms is None


def test_a_commit_taken_before_a_rebalance_is_dropped_after_it() -> None:
    """A periodic commit is taken on the event loop and runs on the Kafka thread; when a
    rebalance came in between (revoked and assigned again in one poll, with eager groups),
    its positions may be older than what the revocation committed: it is dropped, and told
    as failed, so that the next commit carries the positions again (at the end of a stream
    nothing else would: its last records stayed uncommitted until the bridge stopped)."""
    failed: list[Any] = []

    class Listener(SourceListener):
        def not_committed(self, key: Any) -> None:
            failed.append(key)

    fake = FakeConsumer(committed={0: 0}, by_time={})
    source = Source({"group.id": "g"}, ["t"], Listener(), factory=lambda conf: fake)
    partition = [TopicPartition("t", 0)]
    source._assigned(fake, partition)
    taken = source.rebalances
    source.commit([Position("t", 0, 5)], wait=False, rebalances=taken)
    source._revoked(fake, partition)
    source._assigned(fake, partition)
    source.commit([Position("t", 0, 3)], wait=False, rebalances=taken)  # taken before: dropped
    source.commit([Position("t", 0, 9)], wait=False, rebalances=source.rebalances)
    source.commit([Position("t", 1, 9)], wait=False)  # not assigned: dropped
    assert fake.commits == [[(0, 5)], [(0, 9)]] and failed == [None]


class RefusingConsumer(FakeConsumer):
    """Refuses synchronous commits as a broker does during a rebalance, then accepts them."""

    def __init__(self, refusals: list[Any]) -> None:
        super().__init__(committed={0: 0}, by_time={})
        self.refusals = refusals  # per call: an error code to raise or set on the partitions, or None

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[Any]:
        super().commit(offsets, asynchronous)
        code = self.refusals.pop(0)
        if code == KafkaError.REBALANCE_IN_PROGRESS:
            raise KafkaException(KafkaError(code))
        error = KafkaError(code) if code is not None else None
        return [
            SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=tp.offset, error=error)
            for tp in offsets
        ]


def test_a_synchronous_commit_says_whether_the_broker_took_it() -> None:
    """Shutdown commits again while this is False (a rebalance under way refuses commits)."""
    failed: list[Any] = []

    class Listener(SourceListener):
        def not_committed(self, key: Any) -> None:
            failed.append(key)

    fake = RefusingConsumer([KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, None])
    source = Source({"group.id": "g"}, ["t"], Listener(), factory=lambda conf: fake)
    source._assigned(fake, [TopicPartition("t", 0)])
    assert source.commit([Position("t", 0, 5)], wait=True) is False
    assert source.commit([Position("t", 0, 5)], wait=True) is False
    assert source.commit([Position("t", 0, 5)], wait=True) is True
    assert source.commit([Position("t", 1, 5)], wait=True) is True  # nothing of ours to commit
    assert failed == [None, ("t", 0)] and len(fake.commits) == 3


@pytest.mark.parametrize(
    ("line", "reset"),
    [
        (
            "[thrd:main]: t-exp1 [0]: offset reset (at offset 10 (leader epoch -1), broker 1) to offset "
            "BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the broker: "
            "Broker: Offset out of range",
            (("t-exp1", 0), 10, "BEGINNING"),
        ),
        (
            "[thrd:main]: bookings [2]: offset reset (at offset 10 (leader epoch 0), broker 1) to cached "
            "BEGINNING offset offset 50 (leader epoch -1): fetch failed due to requested offset not "
            "available on the broker: Broker: Offset out of range",
            (("bookings", 2), 10, "50"),
        ),
        (
            "[thrd:main]: bookings [2]: offset reset (at offset 10 (leader epoch 0), broker 1) to offset END",
            (("bookings", 2), 10, "END"),
        ),
        ("[thrd:main]: bookings [2]: Fetch backoff for 500ms", None),
    ],
)
def test_librdkafka_s_reset_lines_are_read(line: str, reset: Any) -> None:
    """librdkafka 2.x's wording: the first form when the partition was never fetched from,
    the second (cached) when it was; the first is also checked against the real broker
    (tests/integration/test_start_position.py)."""
    assert offset_reset(line) == reset
