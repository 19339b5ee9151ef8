"""Replay planning without a broker: windows by time (offsets_for_times, which the
mock cluster cannot answer truthfully), by offset, resuming a --group, progress."""

from __future__ import annotations

import asyncio
import io
from argparse import Namespace
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from structlog.testing import capture_logs

from bridge.errors import ConfigError, DecodeError
from bridge.kafka.deadletter import NO_VALUE, VALUE_OMITTED, dead_letter_headers, original_of
from bridge.model import Record
from bridge.ops.planning import parse_offsets, plan
from bridge.ops.replay import report_progress
from bridge.ops.requests import ReplayRequest
from tests.support import until

FROM_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
TO_MS = 1_793_577_600_000  # 2026-11-02T00:00:00Z


class Metadata:
    def __init__(self, partitions: int) -> None:
        self.partitions = dict.fromkeys(range(partitions))
        self.error = None


class FakeConsumer:
    """Two partitions with watermarks (0, 100) and (10, 50); a time index per partition."""

    marks = {0: (0, 100), 1: (10, 50)}
    index = {FROM_MS: {0: 20, 1: 30}, TO_MS + 1: {0: 80, 1: -1}}

    def __init__(self, committed: dict[int, int] | None = None) -> None:
        self._committed = committed or {}
        self.asked: list[int] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        return Namespace(topics={"t": Metadata(2)})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return self.marks[tp.partition]

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += [tp.offset for tp in partitions]
        return [
            TopicPartition(tp.topic, tp.partition, self.index[tp.offset][tp.partition]) for tp in partitions
        ]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self._committed.get(tp.partition, -1001))
            for tp in partitions
        ]


def args(**given: Any) -> ReplayRequest:
    return ReplayRequest(topic="t", **given)


def test_window_by_time_seeks_with_offsets_for_times() -> None:
    consumer = FakeConsumer()
    window = plan(
        consumer, "t", "g", False, args(from_time="2026-11-01T00:00:00Z", to_time="2026-11-02T00:00:00Z")
    )
    # The end is the first record after --to; a partition with none runs to its high watermark.
    assert window.bounds == {0: (20, 80), 1: (30, 50)}
    assert consumer.asked == [FROM_MS, FROM_MS, TO_MS + 1, TO_MS + 1]
    assert window.total == 80


class FlakyTimeIndex(FakeConsumer):
    """Answers a look-up by time with a per-partition error ``failures`` times first."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[Any]:
        if self.failures > 0:
            self.failures -= 1
            first = partitions[0]  # a TopicPartition's error cannot be set: a stand-in
            failed = Namespace(
                topic=first.topic,
                partition=first.partition,
                offset=-1,
                error=KafkaError(KafkaError.LEADER_NOT_AVAILABLE),
            )
            return [failed, *super().offsets_for_times(partitions[1:], timeout)]
        return super().offsets_for_times(partitions, timeout)


def test_a_failed_look_up_by_time_is_asked_again_never_read_as_the_end() -> None:
    """A per-partition error leaves the offset at -1, which also means "no record that
    late": read as such, the window would silently be empty."""
    window = plan(
        FlakyTimeIndex(failures=2),
        "t",
        "g",
        False,
        args(from_time="2026-11-01T00:00:00Z", to_time="2026-11-02T00:00:00Z"),
    )
    assert window.bounds == {0: (20, 80), 1: (30, 50)}
    with pytest.raises(ConfigError, match=r"t: the time look-up failed for t\[0\]: .*Leader not available"):
        plan(FlakyTimeIndex(failures=99), "t", "g", False, args(from_time="2026-11-01T00:00:00Z"))


def test_window_by_offsets_is_inclusive_and_clamped() -> None:
    window = plan(FakeConsumer(), "t", "g", False, args(from_offset="1:0", to_offset="1:19"))
    assert window.bounds == {1: (10, 20)}  # starts at the low watermark, ends after offset 19
    assert window.wants(("t", 1), 19) and not window.wants(("t", 1), 20) and not window.wants(("t", 0), 15)


def test_from_beginning_and_resume_from_the_replay_group() -> None:
    window = plan(FakeConsumer({0: 60}), "t", "g", True, args(from_beginning=True))
    assert window.bounds == {0: (60, 100), 1: (10, 50)}


@pytest.mark.parametrize("text", ["0-1", "a:b", "1:2,3"])
def test_bad_offsets(text: str) -> None:
    with pytest.raises(ConfigError, match="--from-offset: expected PARTITION:OFFSET"):
        parse_offsets(text, "--from-offset")


def test_progress_is_logged_when_not_a_terminal() -> None:
    bridge = Namespace(counts=Counter(consumed=25, delivered=7))

    with capture_logs() as logs:

        async def run() -> None:
            task = asyncio.create_task(report_progress(bridge, 100, io.StringIO(), log_every_s=0.01))
            await until(lambda: any(e["event"] == "replay_progress" for e in logs), 10, "a progress line")
            task.cancel()

        asyncio.run(run())
    line = next(e for e in logs if e["event"] == "replay_progress")
    assert (line["done"], line["total"], line["sent"]) == (25, 100, 7)
    assert line["run"] == "replay" and line["rate"] > 0 and line["eta_s"] is not None


def test_a_dead_letter_without_its_value_points_at_the_source_offset() -> None:
    source = Record("bookings", 2, 41, b"k", b"x" * 10, [("seq", b"7")], 1)
    headers = dead_letter_headers(source, DecodeError("nested too deeply"), NO_VALUE)
    assert (VALUE_OMITTED, b"10 bytes") in headers
    with pytest.raises(DecodeError, match="replay bookings partition 2 offset 41"):
        original_of(Record("bookings.dlq", 0, 0, b"k", None, headers, 1))
    full = original_of(
        Record("bookings.dlq", 0, 0, b"k", source.value, dead_letter_headers(source, DecodeError("x")), 1)
    )
    assert full == source


def test_a_duration_is_a_time_that_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    """`replay --from` took no relative time while `diff --last` and `trace --since` did."""
    import bridge.ops.planning

    monkeypatch.setattr(bridge.ops.planning.time, "time", lambda: TO_MS / 1000 + 3600)
    consumer = FakeConsumer()
    window = plan(consumer, "t", "g", False, args(from_time="25h", to_time="1h"))
    assert consumer.asked == [FROM_MS, FROM_MS, TO_MS + 1, TO_MS + 1]
    assert window.bounds == {0: (20, 80), 1: (30, 50)}
    with pytest.raises(ConfigError) as refused:
        plan(FakeConsumer(), "t", "g", False, args(from_time="yesterday"))
    assert (
        refused.value.problems[0].startswith("--from: ")
        and "nor a duration such as 90m" in refused.value.problems[0]
    )
