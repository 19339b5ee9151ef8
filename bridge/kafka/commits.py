"""A commit request and the broker's answers: what was committed goes to the owner,
what failed is logged (once per error per 10 s) and told too, and a map the broker
refuses as too large is told with its size (steps 3 to 5 of
:mod:`bridge.runtime.checkpoint`)."""

from __future__ import annotations

from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge.kafka.listener import SourceListener
from bridge.logs import Repeats
from bridge.model import Position

log = structlog.get_logger("bridge.kafka.source")


class Commits:
    def __init__(self, listener: SourceListener) -> None:
        self._listener = listener
        self._repeats = Repeats()

    def request(self, consumer: Any, positions: list[Position], wait: bool) -> bool:
        """Commit ``positions`` (``wait``: synchronously); False when the broker refused it."""
        if not positions:
            return True
        offsets = [TopicPartition(p.topic, p.partition, p.offset, metadata=p.metadata) for p in positions]
        log.debug("offsets_commit", offsets={f"{tp.topic}[{tp.partition}]": tp.offset for tp in offsets})
        try:
            result = consumer.commit(offsets=offsets, asynchronous=not wait)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            self.log_refusal(str(error or exc))
            self._listener.not_committed(None)
            if isinstance(error, KafkaError) and error.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                self._listener.map_too_large(max(len(tp.metadata or "") for tp in offsets))
            return False
        if wait and result:
            self.answered(None, result)
            return all(tp.error is None for tp in result)
        return True

    def answered(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer (librdkafka's ``on_commit``, or a synchronous commit's result)."""
        if error is not None:
            self.log_refusal(error.str())
            self._listener.not_committed(None)
        too_large, taken = [], []
        for tp in partitions:
            if tp.error is None and tp.offset >= 0:
                taken.append(Position(tp.topic, tp.partition, tp.offset))
            elif tp.error is not None:
                self.log_refusal(tp.error.str(), topic=tp.topic, partition=tp.partition)
                self._listener.not_committed((tp.topic, tp.partition))
                if tp.error.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                    too_large.append(len(tp.metadata or ""))
        if taken:  # once per commit: each call wakes the event loop
            self._listener.committed(taken)
        if too_large:  # once per commit: the bound follows the smallest map refused
            self._listener.map_too_large(min(too_large) or None)

    def log_refusal(self, error: str, **where: Any) -> None:
        """Logged once per error per 10 s: while the group coordinator moves, every
        commit fails the same way for seconds (the next commit carries the offsets)."""
        if (repeated := self._repeats.allow(error)) is not None:
            log.warning("commit_failed", error=error, **where, **({"repeated": repeated} if repeated else {}))
