"""Planning the window a ``replay`` or ``redrive`` reads: per partition, the first and
last offsets, from times, offsets, the beginning, or where a group stopped."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import TopicPartition

from bridge import timestamps
from bridge.config import parse_duration
from bridge.errors import ConfigError, TimeLookupFailed
from bridge.kafka.consumer import offsets_at_time
from bridge.kafka.window import Window
from bridge.ops.requests import ReplayRequest


def parse_offsets(text: str | None, flag: str) -> dict[int, int]:
    """``0:120,3:5`` → ``{0: 120, 3: 5}``."""
    if not text:
        return {}
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        found = {int(p): int(o) for p, o in pairs}
    except ValueError as exc:
        raise ConfigError([f"{flag}: expected PARTITION:OFFSET[,PARTITION:OFFSET...], got {text!r}"]) from exc
    if any(p < 0 or o < 0 for p, o in found.items()):  # clamped, -5 would read the whole partition
        raise ConfigError([f"{flag}: partitions and offsets are 0 or more, got {text!r}"])
    return found


def plan(consumer: Any, topic: str, group: str, commits: bool, args: ReplayRequest) -> Window:
    """Resolve the request into per-partition (start, end) offsets."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ConfigError([f"--topic {topic}: no such topic"])
    partitions = sorted(metadata.partitions)
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    starts = parse_offsets(args.from_offset, "--from-offset")
    ends = {
        p: o + 1 for p, o in parse_offsets(args.to_offset, "--to-offset").items()
    }  # --to-offset is inclusive
    from_ms = _ms(args.from_time, "--from") if args.from_time else None
    to_ms = _ms(args.to_time, "--to") if args.to_time else None
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ConfigError([f"--from {args.from_time}: later than --to {args.to_time}"])
    if from_ms is not None:
        starts = _offsets_at(consumer, topic, partitions, from_ms)
    elif args.from_beginning:
        starts = {p: marks[p][0] for p in partitions}
    if to_ms is not None:
        ends = _offsets_at(consumer, topic, partitions, to_ms + 1)
    elif ends:  # every partition the window starts on needs its end, and each end a start
        _check_ends(starts, ends)
    unknown = sorted(set(starts) - set(partitions))
    if unknown:
        raise ConfigError([f"--from-offset: {topic} has no partition {unknown[0]}"])
    bounds = {
        p: (max(start, marks[p][0]), min(ends.get(p, marks[p][1]), marks[p][1]))
        for p, start in starts.items()
    }
    if commits:  # resume after what an earlier run with this --group finished
        asked = [TopicPartition(topic, p) for p in bounds]
        for tp in consumer.committed(asked, timeout=10):
            start, end = bounds[tp.partition]
            bounds[tp.partition] = (min(max(start, tp.offset), end), end)
    return Window(topic, group, commits, bounds)


def _check_ends(starts: dict[int, int], ends: dict[int, int]) -> None:
    """--to-offset names exactly the partitions the window starts on, each after its start
    (otherwise the others would be read to their end, or nothing at all)."""
    if unended := sorted(set(starts) - set(ends)):
        raise ConfigError([f"--to-offset: no end for partition {unended[0]}, which the window starts on"])
    if unstarted := sorted(set(ends) - set(starts)):
        raise ConfigError([f"--to-offset: partition {unstarted[0]} has no start in the window"])
    if backwards := [p for p in sorted(starts) if ends[p] <= starts[p]]:
        first = backwards[0]
        raise ConfigError([f"--to-offset {first}:{ends[first] - 1}: before its start, {starts[first]}"])


def _ms(text: str, flag: str) -> int:
    """A time (ISO-8601, epoch) or a duration meaning that long ago (``7d``, ``90m``)."""
    try:
        return timestamps.normalise_ms(text)[1]
    except ValueError as exc:
        try:
            return int((time.time() - parse_duration(text)) * 1000)
        except ValueError:
            reason = f"{exc}, nor a duration such as 90m or 7d (that long ago)"
            raise ConfigError([f"{flag}: {reason}"]) from exc


def _offsets_at(consumer: Any, topic: str, partitions: list[int], at_ms: int) -> dict[int, int]:
    """The first offset at or after ``at_ms`` per partition (the end offset if none)."""
    try:
        found = offsets_at_time(consumer, [TopicPartition(topic, p, at_ms) for p in partitions])
    except TimeLookupFailed as exc:
        raise ConfigError([f"{topic}: {exc}"]) from exc
    result = {}
    for (_, partition), offset in found.items():
        end = TopicPartition(topic, partition)
        result[partition] = offset if offset >= 0 else consumer.get_watermark_offsets(end, timeout=10)[1]
    return result


def plan_redrive(
    consumer: Any, topic: str, group: str, filters: dict[str, tuple[str, ...]] | None = None
) -> Window:
    """From where the redrive group stopped (else the first dead letter) to the end now."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ConfigError([f"delivery.dead_letter_topic: {topic}: no such topic"])
    asked = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
    bounds = {}
    for tp in consumer.committed(asked, timeout=10):
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        bounds[tp.partition] = (max(low, tp.offset), high)
    return Window(topic, group, True, bounds, redrive=True, filters=filters or {})
