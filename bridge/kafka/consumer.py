"""librdkafka's consumer as the bridge uses it: the properties it owns, problems found
offline, look-ups by time and of committed offsets, and records from messages."""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge.config import blank_free
from bridge.errors import BrokerError, ConfigError, TimeLookupFailed
from bridge.kafka import offsetmap
from bridge.model import Record, TopicPartitionKey

log = structlog.get_logger(__name__)

# The bridge owns these: offsets are committed only after delivery.
_FORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False, "enable.partition.eof": True}


TIME_LOOKUP_TRIES = 5


def kafka_reason(exc: KafkaException) -> str:
    """What librdkafka says went wrong, in one line."""
    return exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)


@contextmanager
def asking_kafka(what: str) -> Iterator[None]:
    """confluent-kafka's exception becomes a :class:`BrokerError` naming what was asked:
    the one place above the consumer's own calls where it is translated."""
    try:
        yield
    except KafkaException as exc:
        raise BrokerError(f"{what}: {kafka_reason(exc)}") from exc


def built(factory: Callable[[dict[str, Any]], Any], settings: dict[str, Any]) -> Any:
    """A consumer or producer; one librdkafka refuses to build (a property it does not know,
    a bad value) is a configuration problem, named ``kafka: ...``."""
    try:
        return factory(settings)
    except KafkaException as exc:
        raise ConfigError([f"kafka: {kafka_reason(exc)}"]) from exc


def offsets_at_time(consumer: Any, partitions: list[TopicPartition]) -> dict[TopicPartitionKey, int]:
    """Per partition, the first offset at or after the time each ``TopicPartition``
    carries as its offset (-1: no record that late). A failed look-up is asked again,
    then raised: it must never read as "no record since", which would skip to the end."""
    found: dict[TopicPartitionKey, int] = {}
    errors: dict[TopicPartitionKey, str] = {}
    for _ in range(TIME_LOOKUP_TRIES):
        pending = [tp for tp in partitions if (tp.topic, tp.partition) not in found]
        try:
            answers = consumer.offsets_for_times(pending, timeout=10)
        except KafkaException as exc:
            errors |= {(tp.topic, tp.partition): kafka_reason(exc) for tp in pending}
            continue
        for tp in answers:
            if tp.error is None:
                found[tp.topic, tp.partition] = tp.offset
            else:
                errors[tp.topic, tp.partition] = tp.error.str()
        if len(found) == len(partitions):
            return found
    where = ", ".join(f"{t}[{p}]: {errors[t, p]}" for t, p in errors if (t, p) not in found)
    raise TimeLookupFailed(f"the time look-up failed for {where}")


def consumer_config(kafka: dict[str, Any], start_from: str | None = None) -> dict[str, Any]:
    """The librdkafka properties for the consumer: the user's, plus what the bridge owns.

    ``source.start_from`` ``earliest``/``latest`` becomes ``auto.offset.reset``; a time
    also falls back to ``earliest`` for a partition reset after its offsets expire.
    """
    reset = (
        {}
        if start_from is None
        else {"auto.offset.reset": start_from if start_from == "latest" else "earliest"}
    )
    return {**kafka, **reset, **_FORCED}


def librdkafka_problems(conf: dict[str, Any]) -> list[str]:
    """What librdkafka refuses in a consumer configuration (``auto.ofset.reset``,
    ``auto.offset.reset: earlist``), found offline: the consumer is built with no
    bootstrap servers and closed at once. librdkafka stops at the first bad property,
    so each one found is set aside and the rest tried again."""
    if "group.id" in conf and not blank_free(conf["group.id"]):  # confluent-kafka would abort
        return ["kafka.group.id: must not be empty"]
    conf = {**conf, "bootstrap.servers": "", "log_level": 0}
    problems: list[str] = []
    while True:
        try:
            Consumer(conf).close()
            return problems
        except KafkaException as exc:
            message = kafka_reason(exc)
            named = re.findall(r'"([^"]+)"', message)
            key = named[-1] if named else None
            problems.append(f"kafka.{key}: {message}" if key in conf else f"kafka: {message}")
            if key not in conf or key in ("bootstrap.servers", "log_level"):
                return problems
            conf.pop(key)


def partition_total(consumer: Any, names: list[str]) -> int | None:
    """The partitions of these topics in all; None when the metadata is not
    to be had (the last count stands)."""
    try:
        topics = consumer.list_topics(timeout=5).topics
    except KafkaException as exc:
        log.warning("topic_metadata_unavailable", error=kafka_reason(exc))
        return None
    return sum(len(topics[name].partitions) for name in names if name in topics)


def partition_lag(
    consumer: Any, keys: list[TopicPartitionKey], last_read: dict[TopicPartitionKey, tuple[int, int | None]]
) -> list[tuple[TopicPartitionKey, int, float]]:
    """Per partition: records behind the high watermark, and seconds behind
    (the age of the last record read) while there are records left to read."""
    now_ms = time.time() * 1000
    result = []
    for key in keys:
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        except KafkaException:
            continue
        offset, timestamp = last_read.get(key, (-1, None))
        behind = max(0, high - (offset + 1)) if high >= 0 else 0
        seconds = (now_ms - timestamp) / 1000 if behind and timestamp else 0.0
        result.append((key, behind, max(0.0, seconds)))
    return result


def committed_offsets(
    consumer: Any, partitions: list[TopicPartition]
) -> dict[TopicPartitionKey, TopicPartition] | None:
    """The group's committed offsets (and metadata) of these partitions; None when the
    look-up fails (then nothing is skipped as finished)."""
    if not partitions:
        return {}
    try:
        found = consumer.committed(partitions, timeout=10)
    except KafkaException as exc:
        log.warning("committed_offsets_unavailable", error=kafka_reason(exc))
        return None
    return {(tp.topic, tp.partition): tp for tp in found if tp.error is None}


def committed_map(committed: TopicPartition) -> offsetmap.Committed:
    """What a committed offset's metadata says (the finished offsets, the commit's time); an
    unreadable map (another tool's, corrupt, a newer format) is ignored with a warning:
    nothing is skipped."""
    if committed.offset < 0:
        return offsetmap.Committed(set())
    metadata = committed.metadata or ""
    if (found := offsetmap.read(metadata, committed.offset)) is None:
        log.warning(
            "offset_metadata_unreadable",
            topic=committed.topic,
            partition=committed.partition,
            committed=committed.offset,
            metadata_bytes=len(metadata),
        )
        return offsetmap.Committed(set())
    return found


def commit_maps(consumer: Any, topic: str, positions: dict[int, tuple[int, str]]) -> None:
    """Commit, and wait for, ``partition → (offset, finished-offsets map)`` of ``topic``; a
    :class:`BrokerError` when the broker refuses any of them."""
    if not positions:
        return
    offsets = [TopicPartition(topic, p, offset, metadata=meta) for p, (offset, meta) in positions.items()]
    with asking_kafka("committing"):
        result = consumer.commit(offsets=offsets, asynchronous=False) or []
    if refused := [tp for tp in result if tp.error is not None]:
        raise BrokerError(f"committing {topic}[{refused[0].partition}]: {refused[0].error.str()}")


def record_from_message(message: Any) -> Record:
    _, timestamp = message.timestamp()
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=message_headers(message),
        timestamp_ms=timestamp if timestamp and timestamp > 0 else None,
    )


_HEADERS = operator.methodcaller("headers")  # a call that always checks the error indicator


def message_headers(message: Any) -> list[tuple[str, bytes | None]]:
    """A message's headers. confluent-kafka decodes every header name as UTF-8 and, for one
    that is not (any non-Python producer can write it), returns with the decoding error still
    set, so there is no way to read the others: then the record goes on without headers,
    said in a warning. Called through :data:`_HEADERS`: once the interpreter specialises a
    plain ``message.headers()`` call it no longer checks for that error, which then surfaces
    at some later call as a ``SystemError`` out of nowhere."""
    try:
        return list(_HEADERS(message) or ())
    except (SystemError, UnicodeDecodeError):
        log.warning(
            "record_headers_unreadable",
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            reason="a header name is not UTF-8: the record's headers are dropped",
        )
        return []
