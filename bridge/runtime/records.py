"""The record path: a record from the moment it is read until it is finished.

1. :meth:`RecordPath.on_record` tracks the record in its partition (or drops it:
   revoked, past a replay window, read again after a rewind, finished earlier);
2. decodes and maps it (an Avro record whose schema is not fetched yet is mapped
   in its lane, once the registry answered);
3. a record no rule matches is finished at once (skipped); one that cannot be
   decoded or mapped is rejected;
4. otherwise its commands go to the lane of its key (:mod:`bridge.runtime.lanes`),
   where :meth:`RecordPath.deliver` sends them in order; the record is finished
   when the last is delivered (or stale);
5. a rejected record goes to the dead-letter topic and is finished once the broker
   has it; without a dead-letter topic the bridge stops, the record unfinished.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from bridge.config import RetryConfig
from bridge.decode.avro import SchemaNotCached
from bridge.errors import (
    DecodeError,
    InternalError,
    RecordError,
    RejectedError,
    RetryableError,
    StaleCommand,
)
from bridge.intilery.sending import Backoff
from bridge.kafka.offsets import OffsetTracker, PartitionOffsets
from bridge.kafka.window import Window
from bridge.model import Command, Record, TopicPartitionKey
from bridge.rules.mapping import Mapper
from bridge.runtime.convert import record_commands
from bridge.runtime.health import Stop
from bridge.runtime.lanes import Lanes
from bridge.runtime.outcomes import Outcomes, where
from bridge.runtime.ports import CommandSender, DeadLetterSink, RecordDecoder

log = structlog.get_logger("bridge")


@dataclass(slots=True)
class Work:
    record: Record  # where the record was read: its offset is tracked and committed
    part: PartitionOffsets
    commands: list[Command] | None  # None: decoded in the lane, once its schema is fetched
    origin: Record  # what the rules see: the record itself, or for redrive its original


class RecordPath:
    """Decode, map, deliver in per-key lanes, skip or reject: see the module's steps."""

    def __init__(
        self,
        *,
        decoder: RecordDecoder,
        mapper: Mapper,
        sender: CommandSender,
        dead_letters: DeadLetterSink | None,
        offsets: OffsetTracker,
        outcomes: Outcomes,
        stop: Stop,
        retry: RetryConfig,
        topics: frozenset[str],
        window: Window | None = None,
    ) -> None:
        self.decoder, self.mapper, self.sender = decoder, mapper, sender
        self.dead_letters, self.offsets, self.outcomes = dead_letters, offsets, outcomes
        self.stop, self.window, self._topics = stop, window, topics
        self._backoff = Backoff(retry)
        self.lanes: Lanes[Work] = Lanes(self.deliver)
        self.releasing: set[TopicPartitionKey] = set()  # being revoked: send nothing new for them
        self._rewound: set[TopicPartitionKey] = set()  # read again from before the last read record

    def on_record(self, record: Record) -> None:
        part = self.offsets.get(record.tp)
        if part is None:
            return  # fetched just before its partition was revoked; the next owner reads it
        if self.window is not None and not self.window.wants(record.tp, record.offset):
            return  # past the replay window's end: never tracked, never committed
        if not part.accepts(record.offset):
            self._read_again(record, part)
            return
        if self._rewound:
            self._rewound.discard(record.tp)
        part.add(record.offset, record.size, time.monotonic())
        self.outcomes.consumed(record)
        if self.window is not None and not self.window.selects(record):
            self.outcomes.not_selected()
            part.leave(record.offset)
            return
        if part.finished_earlier(record.offset):  # the last commit's map names it: sent before
            self.outcomes.already_finished(record)
            part.finish(record.offset)
            return
        # Keyed records share a lane per key; unkeyed records need no order between them.
        lane = (*record.tp, record.key) if record.key is not None else (*record.tp, None, record.offset)
        try:
            origin = self.window.origin(record) if self.window is not None else record
            if origin.topic not in self._topics:  # a dead letter from a topic this config does not read
                raise DecodeError(f"source topic {origin.topic} is not in source.topics")
            commands = self._decode_and_map(origin)
        except SchemaNotCached:
            self.lanes.submit(lane, Work(record, part, None, origin))  # the lane fetches the schema first
            return
        except RecordError as exc:
            self.reject(record, part, exc, origin=self._origin_or(record))
            return
        if not commands:
            self._skip(record, part)
            return
        self.lanes.submit(lane, Work(record, part, commands, origin))

    def _read_again(self, record: Record, part: PartitionOffsets) -> None:
        """The consumer went back to a record it had read (an offset reset, or librdkafka
        rewinding a partition after pause and resume): every record up to the last one
        read is tracked already (finished, on the wire or waiting), so it is not sent
        again; the partition goes on once the consumer passes the last one read."""
        first = record.tp not in self._rewound
        self._rewound.add(record.tp)
        self.outcomes.read_again(record, part.last_added, first)

    def _origin_or(self, record: Record) -> Record:
        """The original record when it can be recovered, else the record as read."""
        try:
            return self.window.origin(record) if self.window is not None else record
        except RecordError:
            return record

    def _decode_and_map(self, record: Record) -> list[Command]:
        return record_commands(self.decoder, self.mapper, record)

    def _skip(self, record: Record, part: PartitionOffsets) -> None:
        self.outcomes.skipped(record)
        part.finish(record.offset)

    async def _fetch_schema_then_map(self, work: Work) -> list[Command] | None:
        """Wait for the record's schema (retrying while the registry is down), then map it.

        Gives None when the record was dead-lettered instead.
        """
        attempt = 0
        while True:
            try:
                try:
                    return self._decode_and_map(work.origin)
                except SchemaNotCached as missing:
                    assert self.decoder.registry is not None
                    await self.decoder.registry.ensure(missing.schema_id)
            except RetryableError as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.warning(
                    "schema_registry_retry",
                    **where(work.record),
                    attempt=attempt,
                    reason=exc.reason,
                    retry_in_ms=round(delay * 1000),
                )
                await asyncio.sleep(delay)
            except RecordError as exc:
                self.reject(work.record, work.part, exc, origin=work.origin)
                return None

    async def deliver(self, work: Work) -> None:
        """Send a record's commands in order (its lane's turn); finish it after the last."""
        try:
            if work.commands is None:
                work.commands = await self._fetch_schema_then_map(work)
                if work.commands is None:
                    return
                if not work.commands:
                    self._skip(work.record, work.part)
                    return
            for command in work.commands:
                if self.stop.draining or self.stop.halted(work.record) or work.record.tp in self.releasing:
                    return  # stopping, revoked, or after a failed record of its partition: send no more
                try:
                    delivered = await self.sender.send(command, where(work.record))
                except StaleCommand as stale:
                    self.outcomes.stale(command, work.record, str(stale))
                    continue
                except RejectedError as exc:
                    self.reject(work.record, work.part, exc.for_rule(command.rule), command, work.origin)
                    return
                self.outcomes.delivered(command, work.record, delivered)
            work.part.finish(work.record.offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug this record set off: dead-letter it, the partition goes on
            log.exception("delivery_crashed", **where(work.record))
            error = InternalError(f"while delivering: {type(exc).__name__}: {exc}"[:500])
            self.reject(work.record, work.part, error, origin=work.origin)

    def reject(
        self,
        record: Record,
        part: PartitionOffsets,
        error: RecordError,
        command: Command | None = None,
        origin: Record | None = None,
    ) -> None:
        """Dead-letter ``origin`` (the record itself unless redriving); then ``record`` is finished."""
        origin = origin or record
        if self.window is not None and self.window.redrive:
            # A dead letter that fails again stays where it is, its offset never committed
            # past, rather than being written again (the next redrive would read it twice).
            self.outcomes.failing_again(origin, error, command, record.position)
            part.leave(record.offset)
            return
        if self.dead_letters is None:
            self.outcomes.failed(origin, error, command)
            self.stop.fail(
                f"{record.position}: {error.error_class}: "
                f"{error.reason} (no delivery.dead_letter_topic is set, so the bridge stops)",
                at=record,
            )
            return

        def written() -> None:
            self.outcomes.dead_lettered(origin, error, command)
            part.finish(record.offset)

        self.dead_letters.send(origin, error, written)
