"""Frequency caps through the record path (the real decoder, rules and counts in memory,
fakes for Kafka and Intilery): twelve marketing SMS for one customer under a cap of three
send three and dead-letter nine alone (class ``capped``, the cap named), their records'
other commands going on; e-mails and a ``caps: false`` rule are neither counted nor held;
a command dead-lettered by Intilery gives its place back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from bridge.errors import CappedError
from bridge.kafka.deadletter import CAP, dead_letter_headers
from bridge.model import Command, Record
from bridge.ops.loading import Loaded, load
from bridge.safety.caps import Cap, Caps, MemoryCaps
from bridge.safety.state import State
from tests.recordpath import FakeSender, build, record
from tests.support import TOKEN, base_config, sms_event, write_config


def capped_config(tmp_path: Path) -> Loaded:
    where: Any = type("Where", (), {"bootstrap_servers": "127.0.0.1:9", "topic": "bookings", "dlq": "dlq"})
    config = base_config(where, "http://127.0.0.1:9", "g", audit_topic="audit", commit_interval_ms=10)
    config["delivery"]["caps"] = [
        {"name": "marketing-sms", "commands": ["send_sms"], "max": 3, "window": "1h"}
    ]
    reset = {"event": "send_sms", "userId": "{{ customer.id }}", "assetId": "ASSET-RESET", "seq": "{{ seq }}"}
    config["rules"].append(
        {"name": "password-reset", "when": "type == 'password_reset'", "caps": False, "emit": reset}
    )
    return load(str(write_config(tmp_path, config)), env={"TEST_INTILERY_TOKEN": TOKEN})


def caps_of(loaded: Loaded) -> Caps:
    configured = loaded.config.delivery.caps
    return Caps(
        MemoryCaps(), [Cap(c.name, frozenset(c.commands), c.max, c.window) for c in configured], State()
    )


def events() -> list[dict[str, Any]]:
    """For customer C-0: twelve abandoned-booking SMS (the first two with a big basket: a
    journey too), three e-mails, two password resets, in that order."""
    sms = [
        {**sms_event(n, 1), "booking": {"id": f"B-{n}", "value": 2000 if n < 2 else 10}} for n in range(12)
    ]
    emails = [{**sms_event(12 + n, 1), "channel": "email"} for n in range(3)]
    resets = [{"type": "password_reset", "seq": 15 + n, "customer": {"id": "C-0"}} for n in range(2)]
    return [*sms[:10], *emails, *resets, *sms[10:]]


def test_a_cap_sends_its_share_and_dead_letters_the_rest_alone(tmp_path: Path) -> None:
    loaded = capped_config(tmp_path)
    batches = [[record(n, event) for n, event in enumerate(events())]]
    bridge, source, sender, dlq = build(tmp_path, batches, loaded=loaded, caps=caps_of(loaded))
    with capture_logs() as logs:
        asyncio.run(bridge.run())
    sent = [(c.rule, c.body["seq"]) for c in sender.sent]
    assert [seq for rule, seq in sent if rule == "abandoned-sms"] == [0, 1, 2]
    assert [seq for rule, seq in sent if rule == "big-basket"] == [0, 1]
    assert [seq for rule, seq in sent if rule == "abandoned-email"] == [12, 13, 14]
    assert [seq for rule, seq in sent if rule == "password-reset"] == [15, 16]  # caps: false
    capped = [(r.offset, e) for r, e in dlq.written]
    assert [offset for offset, _ in capped] == [3, 4, 5, 6, 7, 8, 9, 15, 16]
    assert all(
        isinstance(e, CappedError) and e.cap == "marketing-sms" and e.rule == "abandoned-sms"
        for _, e in capped
    )
    headers = dict(dead_letter_headers(record(3), capped[0][1]))
    assert headers[CAP] == b"marketing-sms" and headers["x-bridge-error-class"] == b"capped"
    told = [e for e in logs if e["event"] == "command_capped"]
    assert len(told) == 9 and {e["cap"] for e in told} == {"marketing-sms"}
    assert bridge.parts.outcomes.metrics.capped("marketing-sms")._value.get() == 9
    assert bridge.counts["capped"] == 9 and bridge.counts["dead_lettered"] == 0  # no record dead-lettered
    assert max(position.offset for position in source.commits) == len(events())


def test_a_command_refused_by_intilery_gives_its_place_back(tmp_path: Path) -> None:
    loaded = capped_config(tmp_path)
    refusing = FakeSender(refuse=frozenset({"C-0"}))
    batches = [[record(0, sms_event(0, 1))]]
    bridge, _, _, dlq = build(tmp_path, batches, loaded=loaded, sender=refusing, caps=caps_of(loaded))
    caps = bridge.path.caps
    assert caps is not None
    asyncio.run(bridge.run())
    [(_, error)] = dlq.written
    assert error.error_class == "rejected"
    counts = caps.counts
    assert isinstance(counts, MemoryCaps) and counts._taken == {}  # the place given back


def flood_of(tmp_path: Path) -> tuple[Loaded, list[Record]]:
    """The example rules with abandoned-sms under max_per_minute 30, and 120 of its events."""
    where: Any = type("Where", (), {"bootstrap_servers": "127.0.0.1:9", "topic": "bookings", "dlq": "dlq"})
    config = base_config(where, "http://127.0.0.1:9", "g", commit_interval_ms=10)
    config["rules"][0]["max_per_minute"] = 30
    loaded = load(str(write_config(tmp_path, config)), env={"TEST_INTILERY_TOKEN": TOKEN})
    return loaded, [record(n, sms_event(n, 120), key=f"C-{n}".encode()) for n in range(120)]


def test_a_flood_past_max_per_minute_is_held_alone_and_said_once_a_second(tmp_path: Path) -> None:
    loaded, flood = flood_of(tmp_path)
    bridge, source, sender, dlq = build(tmp_path, [flood], loaded=loaded, caps=caps_of(loaded))
    bridge.parts.outcomes.clock = lambda: 5.0  # a clock that never moves

    with capture_logs() as logs:
        asyncio.run(bridge.run())
    assert len(sender.sent) == 30 and len(dlq.written) == 90  # none lost
    assert {r.offset for r, _ in dlq.written} | {int(c.body["seq"]) for c in sender.sent} == set(range(120))
    assert all(e.error_class == "held" and e.rule == "abandoned-sms" for _, e in dlq.written)
    said = [e for e in logs if e["event"] == "command_held"]
    assert len(said) == 1, "once a second at most: the clock never moved"
    assert bridge.parts.outcomes.metrics.held("abandoned-sms")._value.get() == 90
    assert max(position.offset for position in source.commits) == 120


def sms_command(n: int, per_minute: int) -> Command:
    body = {"event": "send_sms", "userId": f"C-{n}"}
    return Command("flood", "track", body, b"{}", max_per_minute=per_minute)


def sent_of(caps: Caps, count: int, per_minute: int) -> int:
    async def through() -> int:
        return sum([await caps.within_flood(sms_command(n, per_minute), f"g/t/0/{n}") for n in range(count)])

    return asyncio.run(through())


def test_a_breaker_counted_in_the_process_takes_its_partition_share() -> None:
    local = Caps(MemoryCaps(), [], State(), shared=False)
    local.share(0.5)  # half the partitions: half of max_per_minute is this replica's
    assert sent_of(local, 120, 30) == 15
    local.share(0.01)
    assert local.flood_max(30) == 1  # never none
    group = Caps(MemoryCaps(), [], State(), shared=True)
    group.share(0.5)  # the group's count (Redis): the whole max
    assert sent_of(group, 120, 30) == 30


def test_without_redis_a_replica_holding_half_the_partitions_sends_half_the_flood(tmp_path: Path) -> None:
    loaded, flood = flood_of(tmp_path)
    caps = Caps(MemoryCaps(), [], State(), shared=False)
    bridge, source, sender, dlq = build(tmp_path, [flood], loaded=loaded, caps=caps)
    source.partitions_total = 2  # another replica holds the other partition
    asyncio.run(bridge.run())
    assert len(sender.sent) == 15 and len(dlq.written) == 105


def test_the_local_state_is_said_to_be_valid_for_one_replica_when_another_holds_partitions(
    tmp_path: Path,
) -> None:
    said = {}
    for total in (1, 2):  # alone, then beside another member holding the other partition
        caps = Caps(MemoryCaps(), [], State(), shared=False)
        bridge, source, _, _ = build(tmp_path, [[record(0, sms_event(0, 1))]], caps=caps, local_state=True)
        source.partitions_total = total
        with capture_logs() as logs:
            asyncio.run(bridge.run())
        said[total] = [e for e in logs if e["event"] == "dedupe_state_local"]
    assert said[1] == []
    assert [(e["partitions"], e["of"]) for e in said[2]] == [(1, 2)]
