"""The record path with fakes for Kafka, Intilery and the dead-letter topic, in
milliseconds: a bridge built from its parts (no factory, no broker, no HTTP).

The decoder and rules are the real ones, loaded from a configuration as ``run`` does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.errors import RecordError, RejectedError
from bridge.intilery.client import Delivered
from bridge.intilery.sending import Gate
from bridge.kafka.offsets import OffsetTracker
from bridge.metrics import Metrics
from bridge.model import Command, Position, Record, TopicPartitionKey
from bridge.ops.loading import load
from bridge.runtime.health import EXIT_OK, EXIT_PERMANENT_FAILURE, BackPressure, Health, Stop
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.partitions import OnTheLoop, Partitions
from bridge.runtime.pipeline import FETCH_BATCH, Bridge, Parts
from bridge.runtime.records import RecordPath
from tests.support import TOKEN, base_config, sms_event, write_config

TP: TopicPartitionKey = ("bookings", 0)


class FakeSource:
    """Serves the batches given, one per fetch, then reports the partition at its end."""

    def __init__(self, batches: list[list[Record]]) -> None:
        self.batches = batches
        self.listener: OnTheLoop | None = None
        self.finished: dict[TopicPartitionKey, set[int]] = {}  # the last commit's map, on assignment
        self.paused, self.pauses, self.commits = False, list[bool](), list[Position]()
        self.assigned: set[TopicPartitionKey] = set()
        self.at_end: set[TopicPartitionKey] = set()
        self.last_read: dict[TopicPartitionKey, tuple[int, int | None]] = {}
        self.member, self.fatal, self.rebalances, self.partitions_total = False, None, 0, 1

    def start(self) -> None:
        assert self.listener is not None
        self.member, self.assigned = True, {TP}
        self.listener.assigned([TP], self.finished)

    def fetch(self, _: int) -> list[Record]:
        if self.paused or not self.batches:
            self.at_end = set(self.assigned) if not self.batches else set()
            return []
        return self.batches.pop(0)

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.pauses.append(paused)

    def commit(self, positions: list[Position], wait: bool = False, rebalances: int = 0) -> bool:
        assert self.listener is not None
        self.commits += positions
        if positions:
            self.listener.committed(positions)
        return True

    def lag(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class FakeSender:
    """Takes every command at once, but refuses the customers in ``refuse``; ``hold``
    keeps every command waiting until it is set."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse, self.sent, self.hold = refuse, list[Command](), asyncio.Event()
        self.hold.set()
        self.gate, self.in_flight, self.failing_since = Gate(), 0, None

    async def send(self, command: Command, context: Any = None) -> Delivered:
        if not self.hold.is_set():
            await self.hold.wait()
        if command.body["userId"] in self.refuse:
            raise RejectedError("unknown userId", status=400)
        self.sent.append(command)
        return Delivered(202, f"E-{len(self.sent)}", 1.0)


class FakeDeadLetters:
    """The broker acknowledges every dead letter at once."""

    def __init__(self) -> None:
        self.written: list[tuple[Record, RecordError]] = []
        self.pending, self.fatal = 0, None

    def send(self, record: Record, error: RecordError, written: Any) -> None:
        self.written.append((record, error))
        written()

    def poll(self) -> None:
        pass

    def flush(self, _: float) -> None:
        pass


def record(offset: int, event: dict[str, Any] | None = None, key: bytes | None = b"k") -> Record:
    value = json.dumps(event if event is not None else sms_event(offset, 1)).encode()
    return Record("bookings", 0, offset, key, value, [], None)


def build(
    tmp_path: Path,
    batches: list[list[Record]],
    *,
    sender: FakeSender | None = None,
    dead_letters: bool = True,
    max_buffered: int = 1000,
) -> tuple[Bridge, FakeSource, FakeSender, FakeDeadLetters | None]:
    where: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")
    config = base_config(
        where, "http://127.0.0.1:9", "g", max_buffered_records=max_buffered, commit_interval_ms=10
    )
    if not dead_letters:
        del config["delivery"]["dead_letter_topic"]
    loaded = load(str(write_config(tmp_path, config)), env={"TEST_INTILERY_TOKEN": TOKEN})
    source, sender = FakeSource(batches), sender or FakeSender()
    dlq = FakeDeadLetters() if dead_letters else None
    metrics, stop, offsets = Metrics(), Stop(), OffsetTracker()
    outcomes = Outcomes(metrics)
    path = RecordPath(
        decoder=loaded.decoder,
        mapper=loaded.mapper,
        sender=sender,  # type: ignore[arg-type]
        dead_letters=dlq,  # type: ignore[arg-type]
        offsets=offsets,
        outcomes=outcomes,
        stop=stop,
        retry=loaded.config.delivery.retry,
        topics=frozenset({"bookings"}),
    )
    partitions = Partitions(source, path, offsets, metrics, grace_s=1, dead_letters=dlq)  # type: ignore[arg-type]
    source.listener = OnTheLoop()
    source.listener.serve(partitions)
    parts = Parts(
        source=source,  # type: ignore[arg-type]
        listener=source.listener,
        path=path,
        partitions=partitions,
        outcomes=outcomes,
        health=Health(source, sender, stop),  # type: ignore[arg-type]
        back_pressure=BackPressure(max_buffered),
        stop=stop,
    )
    return Bridge(loaded.config, loaded.mapper, parts, until_caught_up=True), source, sender, dlq


def seqs(sender: FakeSender) -> list[int]:
    return [int(command.body["seq"]) for command in sender.sent]


def last_commit(source: FakeSource) -> int:
    return max(position.offset for position in source.commits)


def test_every_record_is_delivered_in_order_then_committed(tmp_path: Path) -> None:
    bridge, source, sender, _ = build(tmp_path, [[record(0), record(1)], [record(2)]])
    assert asyncio.run(bridge.run()) == EXIT_OK
    assert seqs(sender) == [0, 1, 2]
    assert last_commit(source) == 3 and bridge.counts["delivered"] == 3


def test_a_record_no_rule_matches_is_skipped_and_committed(tmp_path: Path) -> None:
    other = {"type": "booking_confirmed", "channel": "sms"}
    bridge, source, sender, _ = build(tmp_path, [[record(0), record(1, other), record(2)]])
    assert asyncio.run(bridge.run()) == EXIT_OK
    assert seqs(sender) == [0, 2]
    assert bridge.counts["skipped"] == 1 and last_commit(source) == 3


def test_a_record_the_last_commit_named_finished_is_not_sent_again(tmp_path: Path) -> None:
    bridge, source, sender, _ = build(tmp_path, [[record(n) for n in range(5)]])
    source.finished = {TP: {1, 3}}
    assert asyncio.run(bridge.run()) == EXIT_OK
    assert seqs(sender) == [0, 2, 4]
    assert bridge.counts["already_finished"] == 2 and last_commit(source) == 5


def test_a_malformed_record_is_dead_lettered_and_passed(tmp_path: Path) -> None:
    bad = Record("bookings", 0, 1, b"k", b"{not json", [], None)
    bridge, source, sender, dlq = build(tmp_path, [[record(0), bad, record(2)]])
    assert asyncio.run(bridge.run()) == EXIT_OK
    assert dlq is not None and [(r.offset, e.error_class) for r, e in dlq.written] == [(1, "decode")]
    assert seqs(sender) == [0, 2] and last_commit(source) == 3


def test_a_refused_command_is_dead_lettered_and_its_key_goes_on(tmp_path: Path) -> None:
    refused = {**sms_event(1, 1), "customer": {"id": "C-REFUSED"}}
    sender = FakeSender(refuse=frozenset({"C-REFUSED"}))
    bridge, source, _, dlq = build(tmp_path, [[record(0), record(1, refused), record(2)]], sender=sender)
    assert asyncio.run(bridge.run()) == EXIT_OK
    assert dlq is not None and [(r.offset, e.error_class, e.rule) for r, e in dlq.written] == [
        (1, "rejected", "abandoned-sms")
    ]
    assert seqs(sender) == [0, 2] and last_commit(source) == 3


def test_without_a_dead_letter_topic_a_refusal_halts_its_partition(tmp_path: Path) -> None:
    refused = {**sms_event(2, 1), "customer": {"id": "C-REFUSED"}}
    batch = [record(0), record(1), record(2, refused), record(3), record(4)]
    sender = FakeSender(refuse=frozenset({"C-REFUSED"}))
    bridge, source, _, _ = build(tmp_path, [batch], sender=sender, dead_letters=False)
    assert asyncio.run(bridge.run()) == EXIT_PERMANENT_FAILURE
    assert seqs(sender) == [0, 1]  # nothing after the refused record of its partition
    assert last_commit(source) == 2  # the refused record is not committed past
    assert bridge.failure is not None and "no delivery.dead_letter_topic" in bridge.failure


@pytest.mark.parametrize("max_buffered", [4, 20])
def test_back_pressure_pauses_while_too_much_is_held(tmp_path: Path, max_buffered: int) -> None:
    sender = FakeSender()
    sender.hold.clear()  # Intilery slow: nothing finishes until released
    batches = [[record(n, key=str(n).encode()) for n in range(10)], [record(10)]]
    bridge, source, _, _ = build(tmp_path, batches, sender=sender, max_buffered=max_buffered)

    async def scenario() -> int:
        running = asyncio.create_task(bridge.run())
        while not source.pauses and not source.commits and len(source.batches) == 2:
            await asyncio.sleep(0.005)
        for _ in range(5):  # some rounds of the loop while held
            await asyncio.sleep(0.01)
        paused_while_held = source.paused
        sender.hold.set()
        code = await running
        assert paused_while_held == (max_buffered == 4)
        return code

    assert asyncio.run(scenario()) == EXIT_OK
    assert sorted(seqs(sender)) == list(range(11)) and last_commit(source) == 11
    if max_buffered == 4:
        assert source.pauses[:2] == [True, False]  # resumed once the held records finished


@pytest.mark.parametrize(
    ("held", "paused", "pause"),
    [(3, False, False), (4, False, True), (3, True, True), (2, True, False), (0, False, False)],
)
def test_back_pressure_resumes_below_half(held: int, paused: bool, pause: bool) -> None:
    assert BackPressure(4).pause(held, paused, auth_blocked=False) is pause
    assert BackPressure(4).pause(0, paused, auth_blocked=True)


def test_readiness_names_each_reason() -> None:
    source, sender, stop, now = SimpleNamespace(member=False), FakeSender(), Stop(), [100.0]
    health = Health(source, sender, stop, clock=lambda: now[0])  # type: ignore[arg-type]
    assert health.readiness() == ["not yet a member of the consumer group"]
    source.member = True
    assert health.readiness() == [] and health.health() == []
    sender.gate.auth_failed, sender.failing_since = True, 80.0  # type: ignore[assignment]
    stop.request()
    now[0] = 140.0
    assert health.readiness() == [
        "Intilery refuses the credentials (401/403)",
        "every request to Intilery has failed for 60s",
        "stopping",
    ]
    assert health.health() == ["the consume loop has not run for 40s"]


def test_reading_ahead_keeps_within_the_buffer_by_one_batch_at_most(tmp_path: Path) -> None:
    """The loop reads the next batch while it handles one, only while both fit below
    max_buffered_records: held records pass the bound by one batch at most, as without."""
    sender = FakeSender()
    sender.hold.clear()  # nothing finishes until released
    batches = [[record(b * FETCH_BATCH + n, key=None) for n in range(FETCH_BATCH)] for b in range(6)]
    max_buffered = 2 * FETCH_BATCH + 200
    bridge, source, _, _ = build(tmp_path, batches, sender=sender, max_buffered=max_buffered)

    async def scenario() -> tuple[int, int]:
        running = asyncio.create_task(bridge.run())
        while not source.paused:
            await asyncio.sleep(0.005)
        for _ in range(10):  # rounds of the loop while paused
            await asyncio.sleep(0.01)
        held = bridge.path.offsets.held()
        sender.hold.set()
        return held, await running

    held, code = asyncio.run(scenario())
    assert code == EXIT_OK
    assert max_buffered <= held <= max_buffered + FETCH_BATCH
    assert sorted(seqs(sender)) == list(range(6 * FETCH_BATCH)) and last_commit(source) == 6 * FETCH_BATCH
