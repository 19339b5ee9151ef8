"""The record path: a record from the moment it is read until it is finished.

1. :meth:`RecordPath.on_record` tracks the record in its partition (or drops it:
   revoked, past a replay window, read again after a rewind, finished earlier);
2. decodes and maps it (an Avro record whose schema is not fetched yet is mapped
   in its lane, once the registry answered);
3. a record no rule matches is finished at once (skipped); one that cannot be
   decoded or mapped is rejected;
4. otherwise its commands go to the lane of its key (:mod:`bridge.runtime.lanes`),
   where :meth:`RecordPath.deliver` sends them in order; the record is finished
   when the last is delivered (or withheld: stale, or incomplete);
5. a rejected record goes to the dead-letter topic and is finished once the broker
   has it; without a dead-letter topic the bridge stops, the record unfinished.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import structlog

from bridge.config import RetryConfig
from bridge.convert import record_commands
from bridge.decode.avro import SchemaNotCached
from bridge.errors import (
    CappedError,
    DecodeError,
    HeldError,
    InternalError,
    RecordError,
    RejectedError,
    RetryableError,
)
from bridge.intilery.client import Delivered
from bridge.intilery.sending import Backoff
from bridge.kafka.deadletter import DeadLetterHeaders, FailureContext
from bridge.kafka.window import Window
from bridge.model import Command, Once, Record, Withheld
from bridge.rules.mapping import Mapper
from bridge.runtime.auditing import Audit
from bridge.runtime.health import Stop
from bridge.runtime.inprogress import RecordInProgress, RecordOutcome
from bridge.runtime.outcomes import Outcomes, record_fields
from bridge.runtime.ports import CommandSender, DeadLetterSink, RecordDecoder
from bridge.runtime.shadow import Shadow
from bridge.runtime.state import Assignment, PartitionState
from bridge.safety.caps import Cap, Caps
from bridge.safety.dedupe import Dedupe
from bridge.safety.early import EarlySteps
from bridge.safety.ledger import Claim, holder_of
from bridge.timestamps import duration_text

log = structlog.get_logger("bridge")


class RecordPath:
    """Decode, map, deliver in per-key lanes, skip or reject: see the module's steps."""

    def __init__(
        self,
        *,
        decoder: RecordDecoder,
        mapper: Mapper,
        sender: CommandSender,
        dead_letters: DeadLetterSink | None,
        states: Assignment,
        outcomes: Outcomes,
        stop: Stop,
        retry: RetryConfig,
        topics: frozenset[str],
        window: Window | None = None,
        shadow: Shadow | None = None,
        audit: Audit | None = None,
        dedupe: Dedupe | None = None,
        caps: Caps | None = None,
        group: str = "",
    ) -> None:
        """``dedupe``, ``caps``: customer safety (``group``: the group reading, which names a
        record holding a dedupe key or a cap's place)."""
        self.decoder = decoder
        self.mapper = mapper
        self.sender = sender
        self.shadow = shadow
        self.dead_letters = dead_letters
        self.audit = audit
        self.dedupe = dedupe
        self.caps = caps
        self.group = group
        self.states = states
        self.outcomes = outcomes
        self.stop = stop
        self.window = window
        self._topics = topics
        self._backoff = Backoff(retry)
        outcomes.rules_in_force(mapper.version)

    def use_rules(self, mapper: Mapper) -> None:
        """Map the records read from now on by ``mapper`` (a reload); those mapped already keep theirs."""
        self.mapper = mapper
        self.outcomes.rules_in_force(mapper.version)

    def on_record(self, record: Record) -> None:
        """Track a record read; map it now when it can be, and hand it to its lane."""
        state = tracked(record, self.states, self.window, self.outcomes)
        if state is None:
            return
        span = self.outcomes.span_of(record)
        work = RecordInProgress(record, state, None, record, self.mapper, span, self.outcomes)
        if not self._map_now(work):
            return
        if work.commands is not None and not work.commands:
            self._skip(work)
            return
        if work.commands and (self.dedupe is not None or self.caps is not None):
            work.early = EarlySteps(self.dedupe, self.caps, self._holder(work), work.commands)
        # Keyed records share a lane per key; unkeyed records need no order between them.
        lane = record.key if record.key is not None else record.offset
        state.lanes.submit(lane, partial(self.deliver, work))

    def _map_now(self, work: RecordInProgress) -> bool:
        """Map the whole record by the rules in force now (its commands left None while its
        schema is to be fetched, in its lane); False when it cannot be: dead-lettered."""
        try:
            work.origin = origin_of(work.record, self.window, self._topics)
            work.commands = self.commands(work)
        except SchemaNotCached:
            pass  # the lane fetches the schema first, then maps it
        except RecordError as exc:
            work.origin = origin_or_read(work.record, self.window)
            self.reject(work, exc)
            return False
        return True

    def commands(self, work: RecordInProgress) -> list[Command]:
        """The work's commands by the rules it was read under (its shadow compared with them);
        a redriven dead letter holding one command alone (over a cap) gives that one only."""
        watch = self.outcomes.fields_missing
        commands = record_commands(self.decoder, work.mapper, work.origin, watch=watch, beside=self.shadow)
        if self.window is None or not self.window.redrive:
            return commands
        headers = DeadLetterHeaders.of(work.record)
        return [c for c in commands if c.rule == headers.rule] if headers.alone else commands

    def _skip(self, work: RecordInProgress) -> None:
        self.outcomes.skipped(work.origin, work.span)
        work.decide(RecordOutcome.SKIPPED)

    async def deliver(self, work: RecordInProgress) -> None:
        """Send a record's commands in order (its lane's turn); decide its outcome after the last."""
        try:
            commands = work.commands if work.commands is not None else await self._mapped_in_lane(work)
            if commands is None:
                return  # dead-lettered or skipped
            sent = self.audit.sent_earlier(work) if self.audit is not None else {}  # not to send again
            for index, command in enumerate(commands):
                if self.stop.draining or not work.state.sends(work.record.offset):
                    return  # stopping, revoked, or after a failed record of its partition: send no more
                if (sent_as := sent.get(command.rule)) is not None:
                    self.outcomes.already_sent(command, work.origin, sent_as, work.span)
                    if work.early is not None:
                        await work.early.let_go(command)
                elif self._guarded(command):
                    if not await self._send_safely(work, command, index):
                        return await self._rejected(work)
                elif await self._post(work, command, index) is None:
                    return await self._rejected(work)
            work.decide(RecordOutcome.DELIVERED)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug this record set off: dead-letter it, the partition goes on
            log.exception("delivery_crashed", **record_fields(work.origin, work.span))
            error = InternalError(f"while delivering: {type(exc).__name__}: {exc}"[:500])
            self.reject(work, error)

    async def _rejected(self, work: RecordInProgress) -> None:
        """The record was dead-lettered at one of its commands: the steps asked early for the
        commands after it are let go (no other record waits for them)."""
        if work.early is not None:
            await work.early.let_go()

    async def _mapped_in_lane(self, work: RecordInProgress) -> list[Command] | None:
        """The commands of a record whose schema had to be fetched first; None when it was
        dead-lettered (it cannot be decoded or mapped) or skipped (no rule made a command)."""
        try:
            work.commands = await mapped_once_fetched(self, self._backoff, work)
        except RecordError as exc:
            self.reject(work, exc)
            return None
        if not work.commands:
            self._skip(work)
            return None
        return work.commands

    def _guarded(self, command: Command) -> bool:
        """Whether the command is under its rule's dedupe, a cap or its rule's flood breaker
        (sent by :meth:`_send_safely`); else it is posted as it is (not sent again when
        the audit topic shows it was; withheld by the sender when stale or incomplete)."""
        if command.max_per_minute is not None or (command.once is not None and self.dedupe is not None):
            return True
        return self.caps is not None and bool(self.caps.applying(command))

    async def _send_safely(self, work: RecordInProgress, command: Command, index: int) -> bool:
        """Not sent when its dedupe finds a copy accepted within the window (waiting for a
        copy's pending outcome); dead-lettered alone when over a cap or past its rule's
        flood breaker (the record's other commands go on); else sent while its key and
        places are held, then the key confirmed, or key and places given back when it is
        not sent after all. False when Intilery rejected it: the record is dead-lettered."""
        caps = self.caps.applying(command) if self.caps is not None else []
        once = command.once if self.dedupe is not None else None
        holder = self._holder(work)
        early = work.early
        if once is not None and self.dedupe is not None:
            found = await self.dedupe.claim(once, holder, early.reservation(command) if early else None)
            if found.claim is Claim.SENT:
                self.outcomes.deduplicated(command, work.origin, found.event_id, work.span)
                if self.audit is not None:
                    self.audit.deduplicated(work, command, found.event_id)
                if early is not None:
                    await early.let_go(command)  # its places in the caps, taken early
                return True
        held = await self._held_back(command, holder, caps, early.places(command) if early else None)
        if held is not None:
            if once is not None and self.dedupe is not None:
                await self.dedupe.release(once, holder)
            return self._alone(work, command, held)
        answer = await self._post_holding(work, command, index, once, holder)
        if once is not None and self.dedupe is not None:
            if isinstance(answer, Delivered):
                await self.dedupe.confirm(once, holder, answer.event_id)
            else:  # dead-lettered (a redrive may send it) or withheld: not sent
                await self.dedupe.release(once, holder)
        if self.caps is not None and not isinstance(answer, Delivered):
            await self.caps.give_back(command, holder, caps)
            await self.caps.give_back_flood(command, holder)
        return answer is not None

    async def _held_back(
        self, command: Command, holder: str, caps: list[Cap], early: list[asyncio.Future[bool]] | None
    ) -> RecordError | None:
        """Why the command is not to be sent: over one of ``caps``, or past its rule's flood
        breaker (None: places taken in each, it may go). ``early``: its places asked for
        when the record was read."""
        if self.caps is None:
            return None
        full = await self.caps.take(command, holder, caps, early) if caps else None
        if full is not None:
            window = duration_text(full.window_s)
            reason = f"over the cap {full.name}: {full.max} within {window} for this customer"
            return CappedError(reason, rule=command.rule, cap=full.name)
        if not await self.caps.within_flood(command, holder):
            await self.caps.give_back(command, holder, caps)
            reason = f"over the rule's max_per_minute ({command.max_per_minute}): held until someone looks"
            return HeldError(reason, rule=command.rule)
        return None

    async def _post_holding(
        self, work: RecordInProgress, command: Command, index: int, once: Once | None, holder: str
    ) -> Delivered | Withheld | None:
        """:meth:`_post`, its dedupe key renewed meanwhile (retries outlast the bound)."""
        if once is None or self.dedupe is None:
            return await self._post(work, command, index)
        with self.dedupe.renewing(once, holder):
            return await self._post(work, command, index)

    def _holder(self, work: RecordInProgress) -> str:
        record = work.record
        return holder_of(self.group, record.topic, record.partition, record.offset)

    def _alone(self, work: RecordInProgress, command: Command, error: RecordError) -> bool:
        """Over a cap or held by its rule's flood breaker: the command alone is dead-lettered,
        its record's others go on (the record finishes once the dead letter is written). A
        redrive's command held back again stays where it is, as any failing again. True:
        the record goes on."""
        if self.dead_letters is None or (self.window is not None and self.window.redrive):
            self.reject(work, error, command)  # check refuses caps without a dead-letter topic
            return False
        self.outcomes.held_back(command, work.origin, error, work.mapper.version, work.span)
        user = command.body.get("userId")
        known = FailureContext(work.mapper.version, None if user is None else str(user), work.span.trace_id)
        self.dead_letters.send(work.origin, error, work.hold(), known)
        return True

    async def _post(
        self, work: RecordInProgress, command: Command, index: int
    ) -> Delivered | Withheld | None:
        """Send the command, or have it withheld; None when Intilery rejected it (the record
        dead-lettered)."""
        try:
            delivered = await self.sender.send(command, record_fields(work.origin, work.span), work.span)
        except RejectedError as exc:
            self.reject(work, exc.for_rule(command.rule), command)
            return None
        if isinstance(delivered, Withheld):
            self.outcomes.withheld(command, work.origin, delivered, work.span)
            if self.audit is not None:
                self.audit.withheld(work, command, delivered)
        else:
            self.outcomes.delivered(command, work.origin, delivered, work.mapper.version, work.span)
            if self.audit is not None:
                self.audit.delivered(work, command, delivered, index)
        return delivered

    def reject(self, work: RecordInProgress, error: RecordError, command: Command | None = None) -> None:
        """Dead-letter the work's origin (the record itself unless redriving); then its
        record is finished. The rules named are those it was mapped by."""
        record = work.record
        state = work.state
        origin = work.origin
        version = work.mapper.version
        if self.window is not None and self.window.redrive:
            # A dead letter that fails again stays where it is, its offset never committed
            # past, rather than being written again (the next redrive would read it twice).
            self.outcomes.failing_again(origin, error, command, record.position, version, work.span)
            state.leave(record.offset)
            return
        if self.dead_letters is None:
            self.outcomes.failed(origin, error, command, version, work.span)
            state.halt(record.offset)
            self.stop.fail(
                f"{record.position}: {error.error_class}: "
                f"{error.reason} (no delivery.dead_letter_topic is set, so the bridge stops)"
            )
            return

        def written() -> None:
            self.outcomes.dead_lettered(origin, error, command, version, work.span)
            work.decide(RecordOutcome.DEAD_LETTERED)

        user = command.body.get("userId") if command is not None else None
        known = FailureContext(version, None if user is None else str(user), work.span.trace_id)
        self.dead_letters.send(origin, error, written, known)


def tracked(
    record: Record, states: Assignment, window: Window | None, outcomes: Outcomes
) -> PartitionState | None:
    """Track ``record`` in its partition; its state when it is to be mapped, None when it is
    dropped (revoked, past a replay window, read again after a rewind) or already done with
    (left by a redrive's filters, finished by an earlier run)."""
    state = states.get(record.tp)
    if state is None:
        return None  # fetched just before its partition was revoked; the next owner reads it
    state.read(record)
    if window is not None and not window.wants(record.tp, record.offset):
        return None  # past the replay window's end: never tracked, never committed
    if not state.track(record, time.monotonic()):
        outcomes.read_again(record, state.last_added, state.read_again())
        return None
    outcomes.consumed(record)
    if window is not None and not window.selects(record):
        outcomes.not_selected()
        state.leave(record.offset)
        return None
    if state.finish_if_earlier(record.offset):  # the last commit's map names it: sent before
        outcomes.already_finished(record)
        return None
    return state


def origin_of(record: Record, window: Window | None, topics: frozenset[str]) -> Record:
    """What the rules see: the record itself, or for redrive its original, which must come
    from a topic this configuration reads."""
    origin = window.origin(record) if window is not None else record
    if origin.topic not in topics:  # a dead letter from a topic this config does not read
        raise DecodeError(f"source topic {origin.topic} is not in source.topics")
    return origin


async def mapped_once_fetched(path: RecordPath, backoff: Backoff, work: RecordInProgress) -> list[Command]:
    """Wait for the record's schema (retrying while the registry is down), then map it;
    a :class:`RecordError` when it cannot be decoded or mapped."""
    attempt = 0
    while True:
        try:
            try:
                return path.commands(work)
            except SchemaNotCached as missing:
                assert path.decoder.registry is not None
                await path.decoder.registry.ensure(missing.schema_id)
        except RetryableError as exc:
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning(
                "schema_registry_retry",
                **record_fields(work.origin),
                attempt=attempt,
                reason=exc.reason,
                retry_in_ms=round(delay * 1000),
            )
            await asyncio.sleep(delay)


def origin_or_read(record: Record, window: Window | None) -> Record:
    """The original record when it can be recovered, else the record as read."""
    try:
        return window.origin(record) if window is not None else record
    except RecordError:
        return record
