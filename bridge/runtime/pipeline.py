"""The bridge: reads records and hands each to the record path, pauses and resumes
the consumer, commits, and stops cleanly. Built by :func:`bridge.runtime.factory.build_bridge`.

Its parts, each in its own module:

- :class:`~bridge.runtime.worker.KafkaWorker`: the Kafka thread and the consumer (read
  ahead, pause, commit requests); :class:`~bridge.runtime.events.KafkaEvents`: what the
  consumer tells, through one queue the loop drains;
- :class:`~bridge.runtime.records.RecordPath`: decode, map, deliver in per-key lanes,
  skip or reject a record (the record path), each record a
  :class:`~bridge.runtime.inprogress.RecordInProgress` until it is finished;
- :class:`~bridge.runtime.state.Assignment`: one :class:`PartitionState` per partition
  owned, all the bridge knows of it;
- :class:`~bridge.runtime.checkpoint.Checkpoint`: the commit job, in numbered steps;
- :class:`~bridge.runtime.partitions.Partitions`: assignment, clean hand-over on
  revocation, the rate share;
- :class:`~bridge.runtime.outcomes.Outcomes`: the count, metric and log line of each outcome;
- :mod:`bridge.runtime.health`: the stop switch, back-pressure, health and readiness;
- :class:`~bridge.runtime.sinks.OwnTopicSinks`: the dead-letter and audit topics' writers.

Delivery guarantees:

- a record's offset is committed only when it and every earlier record of its
  partition are finished: delivered (2xx, and with an audit topic their entries
  acknowledged), dead-lettered (acknowledged by the broker) or skipped;
- commands of one Kafka key (per partition) are posted in record order; at most
  ``max_in_flight`` requests at once overall, each of one command, or with
  ``delivery.batch`` of up to ``max_calls`` (so ``max_in_flight * max_calls`` commands);
- without a dead-letter topic the first permanent failure stops the bridge,
  its offset uncommitted, and :meth:`Bridge.run` returns a non-zero code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from bridge import __version__
from bridge.config import BridgeConfig
from bridge.model import Record
from bridge.rules.mapping import Mapper
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.events import KafkaEvents
from bridge.runtime.health import EXIT_KAFKA_FATAL, BackPressure, Health, Stop
from bridge.runtime.observability import ObservabilityServer
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.partitions import Partitions
from bridge.runtime.ports import CommandSender
from bridge.runtime.records import RecordPath
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.runtime.worker import FETCH_BATCH, KafkaWorker

log = structlog.get_logger("bridge")

IDLE_SLEEP_S = 0.01
COMMIT_RETRY_S = 0.1  # at shutdown, between commits a rebalance refused
LAG_INTERVAL_S = 5.0


@dataclass
class BridgeParts:
    """What a bridge is made of (see the module)."""

    kafka: KafkaWorker
    events: KafkaEvents  # what the consumer tells, to the partitions and the checkpoint
    path: RecordPath
    states: Assignment
    checkpoint: Checkpoint
    partitions: Partitions
    sender: CommandSender
    sinks: OwnTopicSinks  # dead letters and audit entries on their way
    outcomes: Outcomes
    health: Health
    back_pressure: BackPressure
    stop: Stop
    closers: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)  # at the end
    server: ObservabilityServer | None = None


class Bridge:
    """The long-lived consumer. ``await bridge.run()`` gives the exit code."""

    def __init__(
        self, config: BridgeConfig, mapper: Mapper, parts: BridgeParts, *, until_caught_up: bool = False
    ) -> None:
        self.config = config
        self.mapper = mapper
        self.parts = parts
        self.kafka = parts.kafka
        self.path = parts.path
        self.states = parts.states
        self.stop_switch = parts.stop
        self.until_caught_up = until_caught_up

    @property
    def counts(self) -> Counter[str]:
        return self.parts.outcomes.counts

    @property
    def failure(self) -> str | None:
        return self.stop_switch.failure

    async def run(self, alongside: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()) -> int:
        """``alongside``: tasks to run while the bridge runs (the rules' reloader)."""
        install_signal_handlers(self.stop, self.stop_switch)
        if self.parts.server is not None:
            await self.parts.server.start()
        told = self.parts.events.serving(self.parts.partitions, self.parts.checkpoint)
        try:
            return await self._run(alongside)
        finally:
            told.cancel()  # once the consumer is closed: closing it revokes

    async def _run(self, alongside: Sequence[Callable[[], Coroutine[Any, Any, None]]]) -> int:
        await self.kafka.start()
        log.info(
            "bridge_started",
            version=__version__,
            topics=self.config.source.topic_names,
            rules=len(self.mapper),
            rules_version=self.mapper.version,
            max_in_flight=self.config.delivery.max_in_flight,
            observability_port=self.parts.server.port if self.parts.server else None,
        )
        background = [
            asyncio.create_task(every(self.config.delivery.commit_interval_ms / 1000, self.commit)),
            asyncio.create_task(every(self.config.log.summary_interval_s, self._summary)),
            asyncio.create_task(every(LAG_INTERVAL_S, self._update_lag)),
            *(asyncio.create_task(task()) for task in alongside),
        ]
        try:
            await self._consume()
        finally:
            for task in background:
                task.cancel()
            await self._shutdown()
        return self.stop_switch.exit_code

    async def _consume(self) -> None:
        while not self.stop_switch.requested:
            self.parts.health.went_round()
            records = await self._hand_on_next_batch()
            self.parts.sinks.poll()
            await self._hold_back_or_go_on()
            if fatal := self.kafka.fatal or self.parts.sinks.fatal:
                self.stop_switch.fail(f"Kafka: {fatal}", EXIT_KAFKA_FATAL)
            if self._caught_up():
                log.info("caught_up")
                break
            await asyncio.sleep(0 if records else IDLE_SLEEP_S)

    async def _hand_on_next_batch(self) -> list[Record]:
        """The next batch read, each record handed to the record path (none once the bridge
        failed); the batch after it read ahead while there is room."""
        fetched = await self.kafka.read()
        self.states.reached(fetched.ends)
        records = fetched.records
        # Read the next batch on the Kafka thread while this one is handled, rather than
        # wait for it after. A callback it serves (a revocation) runs on this loop after
        # this batch, which is handled without a pause: it finds the batch's records tracked.
        if records and self._room_ahead(records):
            self.kafka.read_ahead()
        for record in records:
            if self.stop_switch.failure is not None:
                break
            self.path.on_record(record)
        return records

    async def _hold_back_or_go_on(self) -> None:
        """Pause the consumer while the records held are over the bounds, or while Intilery
        refuses the credentials; once no lane is left to probe them (all revoked), resume
        so new records probe again."""
        paused = self.kafka.paused
        if (pause := self.parts.back_pressure.pause(*self._held(), paused, self._blocked)) != paused:
            await self.kafka.pause(pause)

    def _caught_up(self) -> bool:
        """``--until-caught-up`` (and replay, redrive): every partition at its end, with
        nothing read ahead (the read ahead may bring more)."""
        return self.until_caught_up and not self.kafka.reading_ahead and self.parts.partitions.caught_up()

    def _held(self) -> tuple[int, int]:
        return self.states.held(), self.states.held_bytes()

    def _room_ahead(self, records: list[Record]) -> bool:
        """Whether a batch read ahead keeps the records held below the bounds."""
        held, held_bytes = self._held()
        with_ahead = (held + len(records) + FETCH_BATCH, held_bytes + 2 * sum(r.size for r in records))
        return self.parts.back_pressure.room(*with_ahead, self.kafka.paused, self._blocked)

    @property
    def _blocked(self) -> bool:
        return self.parts.sender.gate.auth_failed and self.states.lanes() > 0

    async def commit(self, wait: bool = False) -> bool:
        """Commit what changed since the last commit (``wait``: everything, synchronously;
        False when the broker refused it)."""
        return await self.parts.checkpoint.commit(wait)

    async def _shutdown(self) -> None:
        grace = self.config.delivery.shutdown_grace_s
        stopping = self.stop_switch
        sinks = self.parts.sinks
        stopping.begin(grace)  # a second SIGTERM/SIGINT ends the grace at once
        log.info("bridge_stopping", in_flight=self.parts.sender.in_flight, grace_s=grace)
        await self.kafka.pause(True)
        while stopping.left() > 0 and (self._lanes_may_finish() or sinks.pending):
            await self.kafka.poll()  # the group keeps this member; what it reads is never tracked
            sinks.poll()
            await self.states.wait(0.05)
        abandoned = self.states.cancel()
        await asyncio.sleep(0)
        sinks.flush(stopping.left())
        while not (committed := await self.commit(wait=True)) and stopping.left() > 0:
            # A rebalance under way refuses commits (REBALANCE_IN_PROGRESS, or ILLEGAL_GENERATION
            # for one sent while this member was rejoining, a cooperative rebalance's second
            # round): serve it, then commit again, rather than leave the work to be resent.
            await self.kafka.poll()
            await asyncio.sleep(COMMIT_RETRY_S)
        left = {"read_again": self.states.held(), "to_send": self.states.unfinished()}
        await self.kafka.close()
        await self.release()
        if self.parts.server is not None:
            await self.parts.server.stop()
        self._summary()
        self.parts.outcomes.stopped(abandoned, stopping.failure, committed, **left)

    def _lanes_may_finish(self) -> bool:
        """Lanes have a command on the wire, whose answer the grace waits for. A lane with
        none (waiting out a 429's Retry-After, a back-off, the limiter, refused credentials)
        sends nothing more once stopping, so it is not waited for: its records are left to
        the next owner, unsent. (A command's answer is taken by its lane before it leaves
        ``in_flight``: none is left unrecorded.)"""
        return bool(self.states.lanes()) and self.parts.sender.in_flight > 0

    async def release(self) -> None:
        """Close what the parts hold open: the HTTP client, Redis, the schema registry."""
        for close in self.parts.closers:
            if inspect.isawaitable(closing := close()):
                await closing

    def stop(self) -> None:
        """Stop on request (SIGTERM/SIGINT): commands in flight finish, queued ones are
        abandoned (left uncommitted, so whoever reads the partition next sends them)."""
        self.stop_switch.request()

    async def _update_lag(self) -> None:
        lag = await self.kafka.lag(self.states.last_read())
        self.parts.partitions.lag_measured(lag, time.monotonic())

    def _summary(self) -> None:
        sender = self.parts.sender
        self.parts.outcomes.summary(
            in_flight=sender.in_flight, unfinished=self.states.held(), auth_failed=sender.gate.auth_failed
        )


def install_signal_handlers(stop: Callable[[], None], stopping: Stop) -> None:
    """SIGTERM and SIGINT stop the bridge (a second one ends the grace at once)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name, grace=("ended" if stopping.draining else "started"))
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, on_signal, sig)


async def every(seconds: float, action: Callable[[], Awaitable[object] | None]) -> None:
    """Run ``action`` every ``seconds``, whatever one round raises."""
    while True:
        await asyncio.sleep(seconds)
        try:
            if (pending := action()) is not None:
                await pending
        except Exception:  # keep committing and reporting whatever one round did
            log.exception("periodic_task_failed", task=getattr(action, "__name__", "?"))
