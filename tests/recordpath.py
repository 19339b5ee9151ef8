"""A bridge built from its parts with fakes for Kafka, Intilery and the dead-letter
topic (no factory, no broker, no HTTP): the record path in milliseconds. The decoder
and rules are the real ones, loaded from a configuration as ``run`` does. Shared by
``tests/unit/test_record_path.py`` and the fuzzing harness (``tests/fuzzing.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bridge.errors import RecordError, RejectedError
from bridge.intilery.client import Delivered
from bridge.intilery.sending import Gate
from bridge.kafka.deadletter import NO_CONTEXT, FailureContext
from bridge.kafka.sentlog import SentEarlier
from bridge.metrics import Metrics
from bridge.model import Command, Fetched, Position, Record, TopicPartitionKey
from bridge.ops.loading import Loaded, load
from bridge.rules.mapping import Mapper
from bridge.runtime.auditing import Audit
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.events import KafkaEvents
from bridge.runtime.health import BackPressure, Health, Stop
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.partitions import Partitions
from bridge.runtime.pipeline import Bridge, BridgeParts
from bridge.runtime.records import RecordPath
from bridge.runtime.shadow import Shadow
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.runtime.worker import KafkaWorker
from bridge.safety.caps import Caps
from bridge.safety.dedupe import Dedupe
from bridge.safety.state import State
from bridge.tracing import Span
from tests.support import TOKEN, base_config, sms_event, write_config

TP: TopicPartitionKey = ("bookings", 0)


class FakeSource:
    """Serves the batches given, one per fetch, then reports the partition at its end."""

    def __init__(self, batches: list[list[Record]]) -> None:
        self.batches = batches
        self.listener: KafkaEvents | None = None
        self.finished: dict[TopicPartitionKey, set[int]] = {}  # the last commit's map, on assignment
        self.sent: dict[TopicPartitionKey, SentEarlier] = {}  # what the audit topic shows sent since
        self.paused = False
        self.pauses = list[bool]()
        self.commits = list[Position]()
        self.assigned: set[TopicPartitionKey] = set()
        self.member = False
        self.fatal = None
        self.rebalances = 0
        self.partitions_total = 1
        self.last_error: str | None = None

    def start(self) -> None:
        assert self.listener is not None
        keys = sorted({record.tp for batch in self.batches for record in batch} | {TP})
        self.member, self.assigned = True, set(keys)
        self.listener.assigned(keys, self.finished)
        if self.sent:
            self.listener.sent_earlier(self.sent)

    def fetch(self, max_records: int) -> Fetched:
        if self.paused or not self.batches:
            return Fetched([], dict.fromkeys(self.assigned, True) if not self.batches else {})
        records = self.batches.pop(0)
        return Fetched(records, {record.tp: False for record in records})

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.pauses.append(paused)

    def commit(self, positions: Iterable[Position], wait: bool, rebalances: int | None = None) -> bool:
        assert self.listener is not None
        positions = list(positions)
        self.commits += positions
        if positions:
            self.listener.committed(positions)
        return True

    def lag(
        self, last_read: dict[TopicPartitionKey, tuple[int, int | None]]
    ) -> list[tuple[TopicPartitionKey, int, float]]:
        return []

    def close(self) -> None:
        pass


class FakeSender:
    """Takes every command at once, but refuses the customers in ``refuse``; ``hold``
    keeps every command waiting until it is set."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.sent = list[Command]()
        self.hold = asyncio.Event()
        self.hold.set()
        self.gate, self.in_flight = Gate(), 0
        self.failing_since: float | None = None

    async def send(self, command: Command, context: Mapping[str, Any], span: Span | None) -> Delivered:
        if not self.hold.is_set():
            await self.hold.wait()
        if command.body["userId"] in self.refuse:
            raise RejectedError("unknown userId", status=400)
        self.sent.append(command)
        return Delivered(202, f"E-{len(self.sent)}", 1.0)


class FakeAudit:
    """The audit topic's broker: acknowledges each entry when polled, once ``release`` is set."""

    what = "the audit topic"

    def __init__(self) -> None:
        self.entries: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.waiting: list[Callable[[], None]] = []
        self.release = True
        self.fatal = None
        self.failing_since = None
        self.last_failure = None

    @property
    def pending(self) -> int:
        return len(self.waiting)

    def send(self, fields: dict[str, Any], body: dict[str, Any] | None, written: Callable[[], None]) -> None:
        self.entries.append((fields, body))
        self.waiting.append(written)

    def poll(self) -> None:
        if self.release:
            waiting, self.waiting = self.waiting, []
            for written in waiting:
                written()

    def flush(self, _: float) -> None:
        self.poll()


class FakeDeadLetters:
    """The broker acknowledges every dead letter at once."""

    what = "the dead-letter topic"

    def __init__(self) -> None:
        self.written: list[tuple[Record, RecordError]] = []
        self.known: list[FailureContext] = []  # rules version, user, trace: per dead letter
        self.pending, self.fatal = 0, None
        self.failing_since: float | None = None
        self.last_failure: str | None = None

    def send(
        self,
        record: Record,
        error: RecordError,
        written: Callable[[], None],
        known: FailureContext = NO_CONTEXT,
    ) -> None:
        self.written.append((record, error))
        self.known.append(known)
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
    dead_letters: Any = True,
    max_buffered: int = 1000,
    max_buffered_bytes: int = 64 * 1024 * 1024,
    source_config: dict[str, Any] | None = None,
    loaded: Loaded | None = None,
    shadow: Mapper | None = None,
    audit: FakeAudit | None = None,
    skip_audited: bool = True,
    dedupe: Dedupe | None = None,
    caps: Caps | None = None,
    local_state: bool = False,
) -> tuple[Bridge, FakeSource, FakeSender, Any]:
    """``dead_letters``: True for :class:`FakeDeadLetters`, False for none, or the dead-letter
    writer to use; ``source_config``: the ``source`` section (default: the topic ``bookings``,
    JSON); ``loaded``: a configuration loaded already (``source_config`` is then ignored);
    ``shadow``: rules mapped beside the live ones (``run --shadow``); ``audit``: the audit
    topic's writer (``skip_audited``: ``delivery.skip_audited``); ``dedupe``: the ledger's
    side for rules with ``dedupe``; ``caps``: the frequency caps'; ``local_state``: that
    state lives in the process (no Redis)."""
    loaded = loaded or load_config(tmp_path, source_config, max_buffered, bool(dead_letters))
    source, sender = FakeSource(batches), sender or FakeSender()
    dlq = (FakeDeadLetters() if dead_letters is True else dead_letters) if dead_letters else None
    metrics = Metrics()
    stop = Stop()
    states = Assignment()
    kafka = KafkaWorker(source)
    events = KafkaEvents()
    outcomes = Outcomes(metrics)
    path = RecordPath(
        decoder=loaded.decoder,
        mapper=loaded.mapper,
        sender=sender,
        dead_letters=dlq,
        states=states,
        outcomes=outcomes,
        stop=stop,
        retry=loaded.config.delivery.retry,
        topics=frozenset(loaded.config.source.topic_names),
        shadow=Shadow(shadow, metrics) if shadow is not None else None,
        audit=Audit(audit, False, "g", skip_sent=skip_audited) if audit is not None else None,
        dedupe=dedupe,
        caps=caps,
        group="g",
    )
    checkpoint = Checkpoint(states, kafka, metrics)
    breaker = caps if caps is not None and not caps.shared else None  # as the factory shares it out
    partitions = Partitions(
        source,
        states,
        checkpoint,
        metrics,
        grace_s=1,
        sinks=OwnTopicSinks(dlq, audit),
        breaker=breaker,
        local_state=local_state,
    )
    source.listener = events
    parts = BridgeParts(
        kafka=kafka,
        events=events,
        path=path,
        states=states,
        checkpoint=checkpoint,
        partitions=partitions,
        sender=sender,
        sinks=OwnTopicSinks(dlq, audit),
        outcomes=outcomes,
        health=Health(source, sender, stop, states=states, safety=safety_state(dedupe, caps)),
        back_pressure=BackPressure(max_buffered, max_buffered_bytes),
        stop=stop,
    )
    return Bridge(loaded.config, loaded.mapper, parts, until_caught_up=True), source, sender, dlq


def safety_state(dedupe: Dedupe | None, caps: Caps | None) -> State | None:
    """What readiness reads of customer safety: the dedupe's state, else the caps'."""
    if dedupe is not None:
        return dedupe.state
    return caps.state if caps is not None else None


def load_config(
    tmp_path: Path, source_config: dict[str, Any] | None, max_buffered: int = 1000, dead_letters: bool = True
) -> Loaded:
    """``base_config`` (with ``source_config`` as its ``source``), loaded as ``run`` loads it."""
    where: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")
    config = base_config(
        where, "http://127.0.0.1:9", "g", max_buffered_records=max_buffered, commit_interval_ms=10
    )
    if source_config is not None:
        config["source"] = source_config
    if not dead_letters:
        del config["delivery"]["dead_letter_topic"]
    return load(str(write_config(tmp_path, config)), env={"TEST_INTILERY_TOKEN": TOKEN})


def seqs(sender: FakeSender) -> list[int]:
    return [int(command.body["seq"]) for command in sender.sent]


def last_commit(source: FakeSource) -> int:
    return max(position.offset for position in source.commits)
