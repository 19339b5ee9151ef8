"""The record path with fakes for Kafka, Intilery and the dead-letter topic, in
milliseconds: a bridge built from its parts (no factory, no broker, no HTTP).

The decoder and rules are the real ones, loaded from a configuration as ``run`` does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.kafka import offsetmap
from bridge.kafka.sentlog import SentEarlier
from bridge.model import Command, Position, Record
from bridge.rules.mapping import compile_rules
from bridge.runtime.health import EXIT_OK, EXIT_PERMANENT_FAILURE, BackPressure, Health, Stop
from bridge.runtime.outcomes import command_label
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.runtime.worker import FETCH_BATCH
from tests.recordpath import (
    TP,
    FakeAudit,
    FakeDeadLetters,
    FakeSender,
    FakeSource,
    build,
    last_commit,
    load_config,
    record,
    seqs,
)
from tests.support import sms_event, until


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
        paused_while_held, unread_while_held = source.paused, len(source.batches)
        sender.hold.set()
        code = await running
        assert paused_while_held == (max_buffered == 4)
        # 20: both batches read while nothing finished (the loop ran and did not pause);
        # 4: the second left unread until the held records finished.
        assert unread_while_held == (1 if max_buffered == 4 else 0)
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
    assert BackPressure(4).pause(held, 0, paused, auth_blocked=False) is pause
    assert BackPressure(4).pause(0, 0, paused, auth_blocked=True)
    # The same in bytes, whichever bound is reached first
    assert BackPressure(1000, 4000).pause(0, held * 1000, paused, auth_blocked=False) is pause


def test_readiness_names_each_reason() -> None:
    source = FakeSource([])
    sender = FakeSender()
    stop = Stop()
    now = [100.0]
    health = Health(source, sender, stop, clock=lambda: now[0])
    assert health.readiness() == ["not yet a member of the consumer group"]
    source.last_error = "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused"
    assert health.readiness() == [f"not yet a member of the consumer group (Kafka: {source.last_error})"]
    source.member = True
    assert health.readiness() == [] and health.health() == []
    sender.gate.auth_failed, sender.failing_since = True, 80.0
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
        held = bridge.states.held()
        sender.hold.set()
        return held, await running

    held, code = asyncio.run(scenario())
    assert code == EXIT_OK
    assert max_buffered <= held <= max_buffered + FETCH_BATCH
    assert sorted(seqs(sender)) == list(range(6 * FETCH_BATCH)) and last_commit(source) == 6 * FETCH_BATCH


def test_readiness_names_a_dead_letter_outage_and_a_stuck_partition() -> None:
    source = FakeSource([])
    sender = FakeSender()
    stop = Stop()
    dead = FakeDeadLetters()
    source.member = True
    states = Assignment()
    part = states.assign(("bookings", 3))._offsets
    now = [part.moved_at]
    health = Health(
        source, sender, stop, clock=lambda: now[0], sinks=OwnTopicSinks(dead), states=states, stuck_after_s=60
    )
    part.add(0, 10, now[0])
    dead.failing_since, dead.last_failure = now[0], "Broker: Topic authorization failed"
    now[0] += 5
    assert health.readiness() == []
    now[0] += 60
    assert health.readiness() == [
        "the dead-letter topic has refused writes for 65s: Broker: Topic authorization failed",
        "no commit for over 60s while records wait (delivery.stuck_after_s): bookings[3]",
    ]
    part.finish(0)
    dead.failing_since = None
    assert health.readiness() == []


def test_an_exception_nobody_expected_dead_letters_its_record_and_goes_on(tmp_path: Path) -> None:
    """Whatever one record raises (here MemoryError from decoding it) ends as a dead letter
    of class internal naming the exception; it never reaches the loop."""
    batch = [record(0), record(1), record(2)]
    bridge, source, sender, dlq = build(tmp_path, [batch])
    real = bridge.path.decoder

    class OneFails:  # the real decoder, but for the second record
        registry = real.registry

        def decode(self, topic: str, value: bytes | None) -> dict[str, Any]:
            if value == batch[1].value:
                raise MemoryError("one record's size")
            return real.decode(topic, value)

    bridge.path.decoder = OneFails()
    with capture_logs() as logs:
        assert asyncio.run(bridge.run()) == EXIT_OK
    assert [(r.offset, e.error_class, e.reason) for r, e in dlq.written] == [
        (1, "internal", "MemoryError: one record's size")
    ]
    assert seqs(sender) == [0, 2] and last_commit(source) == 3
    (line,) = [e for e in logs if e["event"] == "record_internal_error"]
    assert line["log_level"] == "error" and line["error_type"] == "MemoryError" and line["exc_info"]


def test_the_command_label_is_a_known_command_or_other() -> None:
    def command(event: str) -> Command:
        return Command("r", "track", {"event": event}, b"{}", None, None)

    assert [command_label(command(e)) for e in ("send_sms", "identify", "Booking Viewed", "x" * 500)] == [
        "send_sms",
        "identify",
        "other",
        "other",
    ]


def test_each_record_is_mapped_by_the_rules_in_force_when_it_was_read(tmp_path: Path) -> None:
    """A reload between two records: the first, read before it and still waiting to be
    sent, goes out as it was mapped; the second by the new rules; each logged (and a dead
    letter headed) with the version of the rules that mapped it."""
    sender = FakeSender(refuse=frozenset({"C-2"}))
    sender.hold.clear()
    bridge, _, _, dlq = build(tmp_path, [], sender=sender)
    old = bridge.mapper
    rules = load_config(tmp_path, None).config.model_dump(mode="json")["rules"]
    rules[0]["emit"]["assetId"] = "ASSET-NEW"
    new, problems = compile_rules(rules, ["bookings"])
    assert problems == [] and new.version != old.version

    async def scenario() -> None:
        bridge.states.assign(TP)
        bridge.path.on_record(record(0))
        bridge.path.use_rules(new)
        bridge.path.on_record(record(1))
        bridge.path.on_record(record(2, sms_event(2, 3)))  # customer C-2: refused, dead-lettered
        sender.hold.set()
        assert await bridge.states.wait(5)

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [(c.body["seq"], c.body["assetId"]) for c in sender.sent] == [
        (0, "ASSET-SMS"),
        (1, "ASSET-NEW"),
    ]
    delivered = [(e["offset"], e["rules_version"]) for e in logs if e["event"] == "command_delivered"]
    assert delivered == [(0, old.version), (1, new.version)]
    (dead,) = [e for e in logs if e["event"] == "command_dead_lettered"]
    assert dead["rules_version"] == new.version and [known.rules_version for known in dlq.known] == [
        new.version
    ]
    metrics = bridge.parts.outcomes.metrics.registry
    assert metrics.get_sample_value("intilery_bridge_rules_info", {"rules_version": new.version}) == 1
    assert metrics.get_sample_value("intilery_bridge_rules_info", {"rules_version": old.version}) is None


def finished_after(position: Position) -> set[int] | None:
    """The offsets a commit's map names finished after its offset."""
    return offsetmap.decode(position.metadata or "", position.offset)


def test_no_commit_passes_a_command_whose_audit_entry_is_not_written(tmp_path: Path) -> None:
    audit = FakeAudit()
    audit.release = False
    refused = sms_event(1, 5)
    refused["customer"]["id"] = "C-REFUSED"
    sender = FakeSender(refuse=frozenset({"C-REFUSED"}))
    bridge, source, _, dlq = build(
        tmp_path, [[record(0), record(1, refused), record(2)]], sender=sender, audit=audit
    )

    async def scenario() -> int:
        running = asyncio.create_task(bridge.run())
        # The dead letter written, a commit names it finished: and stops before offset 0,
        # whose audit entry (as offset 2's) is not written yet.
        await until(lambda: any(finished_after(p) == {1} for p in source.commits), 10, "a commit naming 1")
        assert dlq.written and all(position.offset == 0 for position in source.commits)
        audit.release = True
        return await asyncio.wait_for(running, 10)

    assert asyncio.run(scenario()) == EXIT_OK
    assert last_commit(source) == 3
    entries = [fields for fields, body in audit.entries]
    assert [(e["source"]["offset"], e["eventId"], e["resent"]) for e in entries] == [
        (0, "E-1", False),
        (2, "E-2", False),
    ]
    assert all(body is None for _, body in audit.entries)
    assert entries[0]["trace_id"] and entries[0]["rules_version"] == bridge.mapper.version


@pytest.mark.parametrize("skip", [True, False], ids=["skipped", "sent-and-marked"])
def test_a_command_the_audit_topic_shows_sent_after_the_last_commit(tmp_path: Path, skip: bool) -> None:
    """The previous owner sent offset 1's SMS after its last commit (its audit entry says
    so): it is not sent again, or (``skip_audited: false``) sent with its entry marked."""
    audit = FakeAudit()
    bridge, source, sender, _ = build(
        tmp_path, [[record(0), record(1), record(2)]], audit=audit, skip_audited=skip
    )
    source.sent = {TP: SentEarlier(1_000, {1: {"abandoned-sms": "E-EARLIER"}, 2: {"other-rule": "E-X"}})}
    with capture_logs() as logs:
        assert asyncio.run(bridge.run()) == EXIT_OK
    assert seqs(sender) == ([0, 2] if skip else [0, 1, 2])
    entries = [fields for fields, _ in audit.entries]
    resent = [(e["source"]["offset"], e["resent"], e["group"]) for e in entries]
    assert resent == (
        [(0, False, "g"), (2, False, "g")] if skip else [(0, False, "g"), (1, True, "g"), (2, False, "g")]
    )
    skipped = [(e["offset"], e["eventId"], e["rule"]) for e in logs if e["event"] == "command_already_sent"]
    assert skipped == ([(1, "E-EARLIER", "abandoned-sms")] if skip else [])
    assert bridge.parts.outcomes.counts["already_sent"] == len(skipped)
    assert last_commit(source) == 3
