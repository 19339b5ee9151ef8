"""The audit topic without a broker: an entry per command Intilery accepted, keyed by its
userId, with the body only when asked; an entry refused for its content written again
without the body, one refused for availability retried and holding its record back; and
which commands a replay or redrive marks as sent before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from confluent_kafka import KafkaError
from structlog.testing import capture_logs

from bridge.kafka.audit import AuditLog
from bridge.kafka.auditentry import event_time
from bridge.kafka.window import Window
from bridge.model import Command, Record
from bridge.runtime.auditing import sent_before
from tests.unit.test_deadletter import FakeProducer

FIELDS = {
    "eventId": "E-1",
    "rule": "r",
    "userId": "C-1",
    "source": {"topic": "t", "partition": 0, "offset": 7},
}
BODY = {"event": "send_sms", "userId": "C-1", "assetId": "A", "firstName": "Ada"}


def write(
    audit: AuditLog, producer: FakeProducer, body: dict[str, Any] | None, fields: dict[str, Any] = FIELDS
) -> list[str]:
    done: list[str] = []

    async def scenario() -> None:
        audit.send(fields, body, lambda: done.append("done"))
        for _ in range(400):
            if done:
                break
            assert audit.pending <= 1  # one write at a time for one entry
            producer.poll(0)
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    return done


def test_an_entry_is_json_keyed_by_its_user_and_carries_the_body_only_when_asked() -> None:
    producer = FakeProducer([None, None])
    assert write(AuditLog("audit", producer), producer, None) == ["done"]
    assert write(AuditLog("audit", producer), producer, BODY) == ["done"]
    plain, with_body = producer.writes
    assert plain["topic"] == "audit" and plain["key"] == b"C-1"
    assert json.loads(plain["value"]) == FIELDS  # no merge field: the body was not given
    assert json.loads(with_body["value"]) == {**FIELDS, "body": BODY}


def test_an_entry_refused_for_its_size_is_written_without_the_body() -> None:
    producer = FakeProducer([KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None])
    with capture_logs() as logs:
        assert write(AuditLog("audit", producer), producer, BODY) == ["done"]
    assert json.loads(producer.writes[-1]["value"]) == {**FIELDS, "body_omitted": True}
    assert [e["event"] for e in logs] == ["audit_body_omitted"] and logs[0]["offset"] == 7


def test_an_entry_refused_for_availability_is_retried_and_holds_its_record() -> None:
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    producer = FakeProducer([refused, refused, None])
    audit, failures = AuditLog("audit", producer, retry_delay_s=0.01), []
    audit.on_failure = lambda: failures.append(1)
    with capture_logs() as logs:
        assert write(audit, producer, None) == ["done"]  # done only after the third write
    assert len(producer.writes) == 3 and len(failures) == 2 and audit.failing_since is None
    assert [e["event"] for e in logs] == ["audit_write_failed"]  # once per reason per 10 s


def test_a_replay_marks_every_command_resent_a_redrive_those_before_the_rejected_one() -> None:
    commands = [Command(rule, "track", {}, b"{}") for rule in ("a", "b", "c")]
    record = Record("bookings", 0, 1, None, b"{}", [], None)
    assert [sent_before(record, None, commands, i) for i in range(3)] == [False] * 3
    replay = Window("bookings", "g", False)
    assert [sent_before(record, replay, commands, i) for i in range(3)] == [True] * 3
    redrive = Window("bookings.dlq", "g", False, redrive=True)
    rejected = [("x-bridge-error-class", b"rejected"), ("x-bridge-rule", b"b")]
    letter = Record("bookings.dlq", 0, 1, None, b"{}", rejected, None)
    assert [sent_before(letter, redrive, commands, i) for i in range(3)] == [True, False, False]
    mapping = Record("bookings.dlq", 0, 2, None, b"{}", [("x-bridge-error-class", b"mapping")], None)
    assert [sent_before(mapping, redrive, commands, i) for i in range(3)] == [False] * 3


def test_an_event_time_no_calendar_holds_is_kept_as_its_milliseconds() -> None:
    assert event_time(0) == "1970-01-01T00:00:00.000Z"
    assert event_time(10**18) == 10**18 and event_time(None) is None


def test_an_entry_whose_user_or_event_id_holds_a_lone_surrogate_is_written_and_reads_back() -> None:
    """A lone surrogate is valid JSON (an event's customer id, an eventId Intilery answered)
    but not UTF-8: the entry was refused on every try and its record never committed."""
    producer = FakeProducer([None])
    fields = {**FIELDS, "userId": "C-\udce9", "eventId": "evt-\udce9"}
    assert write(AuditLog("audit", producer), producer, BODY, fields) == ["done"]
    (written,) = producer.writes
    assert written["key"] == b"C-\\udce9"
    assert json.loads(written["value"])["userId"] == "C-\udce9"  # the JSON escape: the same string


def test_each_kind_of_entry_is_built_and_read_back_by_the_one_format() -> None:
    """The entry was built in runtime/, written in kafka/ and parsed twice more (the look-up
    after a crash, trace): now one module, its entries versioned."""
    from bridge.kafka import auditentry
    from bridge.kafka.sentlog import sent_entry

    command = Command("abandoned-sms", "track", dict(BODY, timestamp="2026-11-01T00:00:00.000Z"), b"")
    origin = Record("bookings", 2, 41, b"C-1", b"{}", [], 0)
    sent = auditentry.delivered(
        command,
        origin,
        event_id="E-9",
        status=200,
        attempt=1,
        latency_ms=12.34,
        rules_version="v1",
        trace_id="t" * 32,
        resent=False,
        window=None,
    )
    skipped = auditentry.withheld(
        command,
        origin,
        outcome="stale",
        reason="older than 2h (max_age)",
        rules_version="v1",
        trace_id="t" * 32,
        window=None,
    )
    for entry, outcome in ((sent, "delivered"), (skipped, "stale")):
        key, value = auditentry.encode({**entry, "group": "g"}, None, omit_body=False)
        read = auditentry.parse(value)
        assert key == b"C-1" and read is not None and read["v"] == auditentry.VERSION
        assert auditentry.outcome(read) == outcome and read["source"]["offset"] == 41
        assert "firstName" not in read  # ids only, the merge fields stay in the body
    assert sent_entry(auditentry.encode({**sent, "group": "g"}, None, False)[1], "g") == (
        ("bookings", 2),
        41,
        "abandoned-sms",
        "E-9",
    )
    assert sent_entry(auditentry.encode({**skipped, "group": "g"}, None, False)[1], "g") is None
    assert auditentry.outcome({"eventId": "E-1"}) == "delivered"  # an older bridge's entry
    assert auditentry.parse(b"[1]") is None and auditentry.parse(b"\xff") is None
