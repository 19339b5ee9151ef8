"""Where a partition starts, and where librdkafka moved it.

A partition the group has never committed starts where ``source.start_from`` or
``auto.offset.reset`` says, resolved here and committed at once (:func:`start_positions`);
a partition librdkafka reset because its offset no longer exists (deleted by retention)
is read from its ``OFFSET`` log line (:class:`ResetWatch`) and the records skipped are
counted (:func:`count_lost`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaException, TopicPartition

from bridge.errors import TimeLookupFailed
from bridge.kafka.consumer import offsets_at_time
from bridge.model import TopicPartitionKey

log = structlog.get_logger("bridge.kafka.source")


_EARLIEST = frozenset({"earliest", "smallest", "beginning"})
_LATEST = frozenset({"latest", "largest", "end"})


def reset_policy(conf: dict[str, Any]) -> str | None:
    """``earliest`` or ``latest``, as librdkafka reads ``auto.offset.reset`` (its default is
    latest); None for ``error``, which leaves a partition without a position unread."""
    value = str(conf.get("auto.offset.reset", "latest")).lower()
    return "earliest" if value in _EARLIEST else "latest" if value in _LATEST else None


def start_positions(
    consumer: Any,
    partitions: list[TopicPartition],
    committed: dict[TopicPartitionKey, TopicPartition],
    policy: str | None,
    at_ms: int | None = None,
) -> list[TopicPartition]:
    """Partitions the group has never committed, each at the offset it starts from: the
    first record at or after ``at_ms`` (``source.start_from``'s time; the end when none is
    that late), else the first or next offset as ``policy`` says. The bridge commits these
    at once, so a member that reads nothing before it stops still leaves the position for
    the next: resolved again later, ``latest`` would skip what arrived meanwhile. Raises
    :class:`TimeLookupFailed` when the broker does not say where a time is; a partition
    whose watermarks cannot be read is left to librdkafka (and not committed)."""
    fresh = [
        tp
        for tp in partitions
        if (known := committed.get((tp.topic, tp.partition))) is not None and known.offset < 0
    ]
    if not fresh or (policy is None and at_ms is None):
        return []
    found: dict[TopicPartitionKey, int] = {}
    if at_ms is not None:
        found = offsets_at_time(consumer, [TopicPartition(tp.topic, tp.partition, at_ms) for tp in fresh])
        log.info("start_from_time", partitions={f"{t}[{p}]": o for (t, p), o in found.items()})
    resolved = []
    for tp in fresh:
        key = (tp.topic, tp.partition)
        offset = found.get(key, -1)
        if offset < 0:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(*key), timeout=10, cached=False)
            except KafkaException as exc:
                log.warning("watermarks_unavailable", topic=key[0], partition=key[1], error=str(exc))
                continue
            offset = low if policy == "earliest" and at_ms is None else high
        resolved.append(TopicPartition(tp.topic, tp.partition, offset))
    return resolved


def commit_start_positions(consumer: Any, starts: list[TopicPartition]) -> str | None:
    """Commit the group's first positions (from :func:`start_positions`) before anything
    is read; the error when the client refused at once."""
    log.info("start_position_committed", positions={f"{t.topic}[{t.partition}]": t.offset for t in starts})
    try:
        consumer.commit(offsets=starts, asynchronous=True)
    except KafkaException as exc:
        return str(exc.args[0] if exc.args else exc)
    return None


def with_start_positions(
    partitions: list[TopicPartition], starts: list[TopicPartition]
) -> list[TopicPartition]:
    """``partitions``, those in ``starts`` at their start offsets."""
    at = {(tp.topic, tp.partition): tp.offset for tp in starts}
    return [
        TopicPartition(t.topic, t.partition, at.get((t.topic, t.partition), t.offset)) for t in partitions
    ]


_RESET = re.compile(
    r"(?P<topic>\S+) \[(?P<partition>\d+)\]: offset reset \(at offset (?P<old>-?\d+)"
    r".*?\) to (?:cached \S+ offset )?offset (?P<to>\S+)"  # cached: the first (or next) offset known
)


def offset_reset(message: str) -> tuple[TopicPartitionKey, int, str] | None:
    """From librdkafka's ``OFFSET`` log line that it reset a partition's position (its
    committed or fetch offset no longer exists): the partition, the old offset, and where
    it went (``BEGINNING``, ``END`` or an offset). librdkafka's wording (2.x), pinned by
    a test against the real broker."""
    match = _RESET.search(message)
    if match is None:
        return None
    return (match["topic"], int(match["partition"])), int(match["old"]), match["to"]


def skipped_by_reset(consumer: Any, key: TopicPartitionKey, old: int, to: str) -> int:
    """Where a reset from ``old`` to ``to`` (see :func:`offset_reset`) took the partition:
    the first offset left (``BEGINNING``) or the end (``END``), from the watermarks."""
    if to.isdigit():
        return int(to)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(*key), timeout=5, cached=False)
    except KafkaException:
        return old
    return int(high if to == "END" else low)


class ResetWatch(logging.Logger):
    """librdkafka's logger (confluent-kafka calls ``log(level, fmt, *args)`` inside
    ``consume()``) that also notes each partition whose position it reset."""

    def __init__(self, forward: logging.Logger) -> None:
        super().__init__("bridge.librdkafka.resets")
        self._forward = forward
        self.resets: list[tuple[TopicPartitionKey, int, str]] = []

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self._forward.log(level, msg, *args, **kwargs)
        if args and args[0] == "OFFSET" and (reset := offset_reset(str(args[-1]))) is not None:
            self.resets.append(reset)


def count_lost(
    consumer: Any,
    watch: ResetWatch,
    assigned: set[TopicPartitionKey],
    on_lost: Callable[[TopicPartitionKey, int], None],
) -> None:
    """Each reset librdkafka logged: the records between the old offset and where it went
    were never read (the first one left, or the end, from the watermarks)."""
    resets, watch.resets = watch.resets, []
    for key, old, to in resets:
        if old < 0 or key not in assigned:
            continue
        first = skipped_by_reset(consumer, key, old, to)
        where = {"topic": key[0], "partition": key[1], "committed": old, "first_available": first}
        if first > old:
            log.error("records_lost_to_retention", **where, records_lost_to_retention=first - old)
            on_lost(key, first - old)
        else:
            log.warning("offset_reset", **where, to=to)


def where_to_start(
    consumer: Any,
    partitions: list[TopicPartition],
    committed: dict[TopicPartitionKey, TopicPartition] | None,
    policy: str | None,
    start_at_ms: int | None,
    following: bool,
) -> tuple[list[TopicPartition], list[TopicPartition], str | None]:
    """What to assign (partitions the group never committed at their start position), those
    start positions, and a problem that stops the bridge (then nothing is assigned).
    ``committed``: None when the look-up failed; ``following``: the group's partitions, not
    a replay's own assignment."""
    if committed is None:
        if start_at_ms is not None:  # which partitions are new is unknown: do not guess
            return [], [], "source.start_from: the group's committed offsets could not be read"
        return partitions, [], None
    if not following:
        return partitions, [], None
    try:
        starts = start_positions(consumer, partitions, committed, policy, start_at_ms)
    except TimeLookupFailed as exc:
        return [], [], f"source.start_from: {exc}"
    return with_start_positions(partitions, starts), starts, None
