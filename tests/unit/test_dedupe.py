"""A rule's dedupe through the record path (the real decoder, rules and ledger in memory,
fakes for Kafka and Intilery): copies of an event a producer repeated are not sent, not
dead-lettered, but counted, logged and audited; a copy dead-lettered releases its key so
the next one sends; a ledger that does not answer holds the commands back (readiness says
so) and nothing is sent twice when it returns; a key that renders empty is a dead letter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from bridge.errors import RejectedError
from bridge.intilery.client import Delivered
from bridge.model import Command, Once
from bridge.ops.loading import Loaded, load
from bridge.safety.dedupe import Dedupe
from bridge.safety.early import EarlySteps
from bridge.safety.ledger import Claim, LedgerUnavailable, MemoryLedger, Reservation
from bridge.tracing import Span
from tests.recordpath import FakeAudit, FakeSender, build, record
from tests.support import TOKEN, base_config, sms_event, write_config


def dedupe_config(tmp_path: Path, key: str = "{{ booking.id }}") -> Loaded:
    where: Any = type("Where", (), {"bootstrap_servers": "127.0.0.1:9", "topic": "bookings", "dlq": "dlq"})
    config = base_config(where, "http://127.0.0.1:9", "g", audit_topic="audit", commit_interval_ms=10)
    config["rules"][0]["dedupe"] = {"key": key, "window": "24h"}
    return load(str(write_config(tmp_path, config)), env={"TEST_INTILERY_TOKEN": TOKEN})


def booking(seq: int, booking_id: str) -> dict[str, Any]:
    """The event ``seq``: an abandoned booking, customer C-0, booking ``booking_id``."""
    return {**sms_event(seq, 1), "booking": {"id": booking_id, "value": 1}}


def run(bridge: Any) -> None:
    asyncio.run(bridge.run())


def test_copies_of_an_event_are_sent_once_and_told(tmp_path: Path) -> None:
    audit = FakeAudit()
    dedupe = Dedupe(MemoryLedger(), 60)
    events = [booking(0, "B-7"), booking(1, "B-7"), booking(2, "B-8"), booking(3, "B-7")]
    bridge, source, sender, dlq = build(
        tmp_path,
        [[record(n, event, key=f"k{n}".encode()) for n, event in enumerate(events)]],
        loaded=dedupe_config(tmp_path),
        audit=audit,
        dedupe=dedupe,
    )
    with capture_logs() as logs:
        run(bridge)
    assert [c.body["bookingId"] for c in sender.sent] == ["B-7", "B-8"]
    assert dlq.written == [] and bridge.counts["deduplicated"] == 2
    told = [entry for entry in logs if entry["event"] == "command_deduplicated"]
    assert [(e["offset"], e["first_eventId"], e["userId"]) for e in told] == [
        (1, "E-1", "C-0"),
        (3, "E-1", "C-0"),
    ]
    outcomes = [fields["outcome"] for fields, _ in audit.entries]
    assert sorted(outcomes) == ["deduplicated", "deduplicated", "delivered", "delivered"]
    delivered = [fields for fields, _ in audit.entries if fields["outcome"] == "delivered"]
    assert all(len(fields["once"]) == 40 for fields in delivered)  # the key, hashed
    metric = bridge.parts.outcomes.metrics.deduplicated("abandoned-sms")
    assert metric._value.get() == 2
    assert max(position.offset for position in source.commits) == 4  # every copy committed


class RefusingOnce(FakeSender):
    """Rejects the first command it is given, takes the rest."""

    async def send(self, command: Command, context: Any, span: Span | None) -> Delivered:
        if not self.sent and not getattr(self, "refused", False):
            self.refused = True
            raise RejectedError("unknown assetId", status=400)
        return await super().send(command, context, span)


def test_a_copy_dead_lettered_releases_its_key_for_the_next(tmp_path: Path) -> None:
    dedupe = Dedupe(MemoryLedger(), 60)
    events = [booking(0, "B-7"), booking(1, "B-7"), booking(2, "B-7")]
    bridge, _, sender, dlq = build(
        tmp_path,
        [[record(n, event, key=f"k{n}".encode()) for n, event in enumerate(events)]],
        sender=RefusingOnce(),
        loaded=dedupe_config(tmp_path),
        audit=FakeAudit(),
        dedupe=dedupe,
    )
    run(bridge)
    assert [record.offset for record, _ in dlq.written] == [0]  # redrive may send it: released
    assert [c.body["seq"] for c in sender.sent] == [1]  # the next copy sent, the last deduplicated
    assert bridge.counts["deduplicated"] == 1


class Flaky(MemoryLedger):
    """A ledger that does not answer its first ``down`` calls."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down
        self.calls = 0

    def reserving(self, key: str, holder: str, hold_s: float) -> asyncio.Future[Reservation]:
        self.calls += 1
        if self.calls > self.down:
            return super().reserving(key, holder, hold_s)
        failed: asyncio.Future[Reservation] = asyncio.get_running_loop().create_future()
        failed.set_exception(LedgerUnavailable("Redis: ConnectionError"))
        return failed

    async def reserve(self, key: str, holder: str, hold_s: float) -> Reservation:
        return await self.reserving(key, holder, hold_s)


def test_a_ledger_that_does_not_answer_holds_the_commands_back(tmp_path: Path) -> None:
    ledger = Flaky(down=6)  # the three asked early as the records are read, then three in the lane
    states: list[bool] = []
    reasons: list[list[str]] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # readiness read while the ledger is down
        waits.append(seconds)
        reasons.append(bridge.parts.health.readiness())
        await asyncio.sleep(0)

    dedupe = Dedupe(ledger, 60, on_state=states.append, sleep=sleep)
    events = [booking(0, "B-7"), booking(1, "B-7"), booking(2, "B-8")]
    bridge, _, sender, dlq = build(
        tmp_path,
        [[record(n, event, key=b"one") for n, event in enumerate(events)]],
        loaded=dedupe_config(tmp_path),
        audit=FakeAudit(),
        dedupe=dedupe,
    )
    with capture_logs() as logs:
        run(bridge)
    assert [c.body["bookingId"] for c in sender.sent] == ["B-7", "B-8"] and dlq.written == []
    assert states == [False, True] and waits[:3] == [0.2, 0.4, 0.8]  # asked again, backing off
    assert any("customer-safety state (dedupe, caps) does not answer" in r for rs in reasons for r in rs)
    events_logged = [entry["event"] for entry in logs]
    assert events_logged.count("dedupe_state_unavailable") == 1
    assert events_logged.count("dedupe_state_restored") == 1


def test_a_key_that_renders_empty_is_a_dead_letter(tmp_path: Path) -> None:
    dedupe = Dedupe(MemoryLedger(), 60)
    event = {**sms_event(0, 1), "booking": {"value": 1}}  # no booking id
    bridge, _, sender, dlq = build(
        tmp_path, [[record(0, event)]], loaded=dedupe_config(tmp_path), audit=FakeAudit(), dedupe=dedupe
    )
    run(bridge)
    assert sender.sent == []
    [(_, error)] = dlq.written
    assert error.error_class == "mapping" and "dedupe.key: rendered empty" in error.reason
    assert "booking.id" in error.reason


def test_a_reservation_is_renewed_while_its_command_is_out_and_ends_after() -> None:
    """A live owner's send outlasting the bound keeps its key (one task renews every
    reservation held); once the block is left, the reservation ends with its bound."""
    ledger = MemoryLedger()
    dedupe = Dedupe(ledger, 0.3)

    async def scenario() -> None:
        await ledger.reserve("k", "A", 0.3)
        with dedupe.renewing(Once("k", 60), "A"):
            await asyncio.sleep(0.8)
            assert (await ledger.reserve("k", "B", 0.3)).claim is Claim.PENDING
        await asyncio.sleep(0.5)
        assert (await ledger.reserve("k", "B", 0.3)).claim is Claim.RESERVED
        await dedupe.close()

    asyncio.run(scenario())


def test_a_records_key_is_reserved_when_it_is_read_and_let_go_when_unused() -> None:
    """Its lane takes the early answer while fresh (after that it asks again); a record
    that never uses its steps lets them go, so a copy does not wait for them."""
    ledger = MemoryLedger()
    dedupe = Dedupe(ledger, 60)
    command = Command(
        "abandoned-sms", "track", {"userId": "C-1", "event": "send_sms"}, b"", once=Once("k", 60)
    )
    now = [0.0]

    async def scenario() -> None:
        early = EarlySteps(dedupe, None, "A", [command], clock=lambda: now[0])
        assert (await ledger.reserve("k", "B", 60)).claim is Claim.PENDING  # held from the read on
        answer = early.reservation(command)
        assert answer is not None and (await answer).claim is Claim.RESERVED
        stale = EarlySteps(dedupe, None, "A", [command], clock=lambda: now[0])
        now[0] += dedupe.fresh_s
        assert stale.reservation(command) is None  # too old to trust: the lane asks again
        unused = EarlySteps(dedupe, None, "A", [command])
        await unused.let_go()
        assert (await ledger.reserve("k", "B", 60)).claim is Claim.RESERVED

    asyncio.run(scenario())
