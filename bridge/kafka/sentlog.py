"""What the audit topic says the previous owner of a partition sent after its last commit.

A bridge that crashes (SIGKILL, OOM, node loss) leaves the commands it sent since its
last commit uncommitted: whoever reads the partition next would send them again. Each
commit says since when the records from its offset on may have had commands sent
(:mod:`bridge.kafka.offsetmap`); on assignment, the new owner reads the audit topic's
entries from that time (less :data:`MARGIN_MS`) to its end, by a consumer of its own
(no group joined), and keeps those of its group for the partition's records from the
committed offset on: ``(offset, rule) → eventId``. Those commands are not sent again
(``delivery.skip_audited``), or are sent and their entries marked ``resent``.

The look-up runs on a thread of its own, so the Kafka thread goes on polling and the
other partitions' records keep flowing; the partitions looked up stay paused until it
is done (:class:`~bridge.kafka.source.Source`), so none of their records is handed on
before what their previous owner sent is known.

Entries are outside bytes (another writer may share the topic): anything that is not
an entry of this group, outside a replay, naming a source offset and a rule, is passed
over. A look-up that fails or takes longer than ``timeout_s`` gives what it found: a
command it missed is sent again, as it would be without an audit topic.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge import timestamps
from bridge.errors import TimeLookupFailed
from bridge.kafka import auditentry, offsetmap
from bridge.kafka.consumer import kafka_reason, offsets_at_time
from bridge.kafka.window import Window, read_window, window_reader
from bridge.model import TopicPartitionKey

log = structlog.get_logger("bridge.kafka.sentlog")

MARGIN_MS = 5_000  # entries are stamped by the clock that stamped the commit: a margin for its steps


@dataclass(frozen=True, slots=True)
class SentEarlier:
    """Commands of a partition's records sent after its last commit, as the audit topic
    shows: ``commands[offset][rule]`` is Intilery's eventId; ``since_ms`` the commit's time."""

    since_ms: int
    commands: dict[int, dict[str, str]] = field(default_factory=dict)

    def from_offset(self, offset: int) -> SentEarlier:
        """Those of the records at ``offset`` and after."""
        if not self.commands or min(self.commands) >= offset:
            return self
        return SentEarlier(self.since_ms, {o: r for o, r in self.commands.items() if o >= offset})


@dataclass(frozen=True, slots=True)
class Wanted:
    """A partition to look up: its committed offset, the offsets its map names finished
    (sent or not, they are skipped), and the commit's time."""

    committed: int
    finished: set[int]
    since_ms: int


class SentLog:
    """Look-ups in the audit topic (see the module)."""

    def __init__(
        self,
        kafka: dict[str, Any],
        topic: str | None,
        group: str,
        timeout_s: float = 10.0,
        factory: Callable[..., Any] = Consumer,
    ) -> None:
        """``topic``: the audit topic (None: nothing is looked up)."""
        self._kafka = kafka
        self._topic = topic
        self._group = group
        self._timeout_s = timeout_s
        self._factory = factory
        self._wanted: dict[TopicPartitionKey, Wanted] = {}  # assigned, the look-up not started yet
        self._looking: dict[TopicPartitionKey, Wanted] = {}  # being looked up (the latest of each)
        self._answers: queue.SimpleQueue[dict[TopicPartitionKey, tuple[Wanted, SentEarlier]]]
        self._answers = queue.SimpleQueue()

    @classmethod
    def off(cls) -> SentLog:
        """Looks nothing up: no audit topic, or a replay (which commits nothing of the group's)."""
        return cls({}, None, "")

    def assigned(
        self, committed: dict[TopicPartitionKey, tuple[int, offsetmap.Committed]]
    ) -> set[TopicPartitionKey]:
        """Partitions assigned, each with its committed offset and what its metadata says:
        those whose commit says commands may have been sent since are looked up (the keys
        given back); their records wait until :meth:`looked_up` gives what was found."""
        if self._topic is None:
            return set()
        wanted = {
            key: Wanted(offset, found.finished, found.since_ms)
            for key, (offset, found) in committed.items()
            if found.since_ms
        }
        self._wanted |= wanted
        self._looking |= wanted
        return set(wanted)

    def revoked(self, keys: list[TopicPartitionKey]) -> None:
        for key in keys:
            self._wanted.pop(key, None)
            self._looking.pop(key, None)  # what its look-up finds is passed over

    def looked_up(self) -> dict[TopicPartitionKey, SentEarlier] | None:
        """What the look-ups done since the last call found, for the partitions still
        assigned as they were (None: nothing new); starts the look-up of those assigned
        since. Never inside a rebalance callback: it reads with a consumer of its own."""
        if self._wanted:
            wanted, self._wanted = self._wanted, {}
            threading.Thread(target=self._look_up_aside, args=(wanted,), daemon=True).start()
        found: dict[TopicPartitionKey, SentEarlier] = {}
        while not self._answers.empty():
            for key, (want, sent) in self._answers.get().items():
                if self._looking.get(key) is want:  # not revoked (nor assigned again) meanwhile
                    del self._looking[key]
                    found[key] = sent
        return found or None

    def _look_up_aside(self, wanted: dict[TopicPartitionKey, Wanted]) -> None:
        try:
            found = self.look_up(wanted)
        except Exception:  # never leave the partitions waiting: found nothing, sent again
            log.exception("audit_lookup_failed", topic=self._topic)
            found = {key: SentEarlier(want.since_ms) for key, want in wanted.items()}
        self._answers.put({key: (want, found[key]) for key, want in wanted.items()})

    def look_up(self, wanted: dict[TopicPartitionKey, Wanted]) -> dict[TopicPartitionKey, SentEarlier]:
        """Per partition of ``wanted``, the commands its entries show were sent."""
        found = {key: SentEarlier(want.since_ms) for key, want in wanted.items()}
        if not wanted or (topic := self._topic) is None:
            return found
        started = time.monotonic()
        until = started + self._timeout_s
        entries = complete = 0
        consumer = window_reader(self._kafka, f"{self._group}-sent-{uuid.uuid4().hex[:8]}", self._factory)
        try:
            since_ms = min(w.since_ms for w in wanted.values()) - MARGIN_MS
            window = audit_window(consumer, topic, self._group, since_ms)
            consumer.assign(window.assignment())
            for record in read_window(consumer, window, until):
                entries += 1
                if (record.timestamp_ms or since_ms) < since_ms:
                    continue  # written before (a partition's times need not rise): of an earlier run
                if (sent := sent_entry(record.value, self._group)) is None:
                    continue
                key, offset, rule, event_id = sent
                want = wanted.get(key)
                if want is not None and offset >= want.committed and offset not in want.finished:
                    found[key].commands.setdefault(offset, {})[rule] = event_id
            complete = time.monotonic() < until
        except (KafkaException, TimeLookupFailed) as exc:
            reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
            log.warning("audit_lookup_failed", topic=topic, error=reason)
        finally:
            consumer.close()
        log.info(
            "audit_looked_up",
            partitions=sorted(f"{t}[{p}]" for t, p in wanted),
            entries_read=entries,
            sent_earlier=sum(len(rules) for s in found.values() for rules in s.commands.values()),
            complete=bool(complete),
            took_ms=round((time.monotonic() - started) * 1000),
        )
        return found


def audit_window(consumer: Any, topic: str, group: str, since_ms: int) -> Window:
    """The audit topic from ``since_ms`` to its end now."""
    metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
    partitions = sorted(metadata.partitions) if metadata is not None and metadata.error is None else []
    starts = offsets_at_time(consumer, [TopicPartition(topic, p, since_ms) for p in partitions])
    bounds = {}
    for partition in partitions:
        high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[1]
        start = starts[topic, partition]
        bounds[partition] = (high if start < 0 else start, high)
    return Window(topic, group, False, bounds)


@dataclass(frozen=True, slots=True)
class SentOnce:
    """A command the audit topic shows Intilery accepted, as customer safety counts it."""

    key: str | None  # the dedupe ledger's key (a hash), when its rule dedupes
    rule: str
    command: str  # send_sms, ...
    user: str  # its userId
    source: tuple[str, int, int]  # the record it was of: topic, partition, offset
    event_id: str
    sent_ms: int


def sent_once(
    kafka: dict[str, Any],
    topic: str,
    group: str,
    since_ms: int,
    timeout_s: float,
    factory: Callable[..., Any] = Consumer,
) -> tuple[list[SentOnce], bool]:
    """The commands ``group`` sent since ``since_ms`` (a replay's too: they count as sent), as
    the audit topic shows them, and whether it was read to its end within ``timeout_s``.
    Anything else in the topic is passed over."""
    found: list[SentOnce] = []
    until = time.monotonic() + timeout_s
    consumer = window_reader(kafka, f"{group}-once-{uuid.uuid4().hex[:8]}", factory)
    try:
        window = audit_window(consumer, topic, group, since_ms)
        consumer.assign(window.assignment())
        for record in read_window(consumer, window, until):
            entry = auditentry.parse(record.value)
            if entry is not None and entry.get("group") == group and (sent := once_entry(entry)):
                found.append(sent)
        return found, time.monotonic() < until
    except (KafkaException, TimeLookupFailed) as exc:
        reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
        log.warning("audit_lookup_failed", topic=topic, error=reason)
        return found, False
    finally:
        consumer.close()


def once_entry(entry: dict[str, Any]) -> SentOnce | None:
    """A delivered entry, or None."""
    key = entry.get("once")
    rule = entry.get("rule")
    source = entry.get("source")
    if auditentry.outcome(entry) != auditentry.DELIVERED or not isinstance(source, dict):
        return None
    if not isinstance(rule, str) or (key is not None and not isinstance(key, str)):
        return None
    where = (source.get("topic"), source.get("partition"), source.get("offset"))
    if not isinstance(where[0], str) or type(where[1]) is not int or type(where[2]) is not int:
        return None
    try:
        sent_ms = timestamps.normalise_ms(entry.get("sent_at"))[1]
    except ValueError:
        return None
    command, user = str(entry.get("command") or ""), str(entry.get("userId") or "")
    return SentOnce(
        key, rule, command, user, (where[0], where[1], where[2]), str(entry.get("eventId") or ""), sent_ms
    )


def sent_entry(value: bytes | None, group: str) -> tuple[TopicPartitionKey, int, str, str] | None:
    """An audit entry of a command ``group`` sent (outside a replay): its source partition
    and offset, its rule and eventId; None for anything else."""
    entry = auditentry.parse(value)
    if entry is None or entry.get("group") != group or "window" in entry:
        return None
    if auditentry.outcome(entry) != auditentry.DELIVERED:
        return None  # a command not sent (stale, incomplete): nothing to keep from sending again
    source, rule = entry.get("source"), entry.get("rule")
    if not isinstance(source, dict) or not isinstance(rule, str):
        return None
    topic = source.get("topic")
    partition = source.get("partition")
    offset = source.get("offset")
    if not isinstance(topic, str) or type(partition) is not int or type(offset) is not int:
        return None
    return (topic, partition), offset, rule, str(entry.get("eventId") or "")
