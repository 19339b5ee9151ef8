"""The bridge: reads records and hands each to the record path, pauses and resumes
the consumer, commits, and stops cleanly. Built by :func:`bridge.runtime.factory.build_bridge`.

Its parts, each in its own module:

- :class:`~bridge.runtime.records.RecordPath`: decode, map, deliver in per-key lanes,
  skip or reject a record (the record path);
- :class:`~bridge.runtime.partitions.Partitions`: assignment, clean hand-over on
  revocation, the rate share, what may be committed;
- :class:`~bridge.runtime.outcomes.Outcomes`: the count, metric and log line of each outcome;
- :mod:`bridge.runtime.health`: the stop switch, back-pressure, health and readiness.

Delivery guarantees:

- a record's offset is committed only when it and every earlier record of its
  partition are finished: delivered (2xx), dead-lettered (acknowledged by the
  broker) or skipped;
- commands of one Kafka key (per partition) are posted in record order, at most
  ``max_in_flight`` at once overall;
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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from bridge import __version__
from bridge.config import BridgeConfig
from bridge.model import Record
from bridge.rules.mapping import Mapper
from bridge.runtime.health import EXIT_KAFKA_FATAL, BackPressure, Health, Stop
from bridge.runtime.observability import ObservabilityServer
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.partitions import OnTheLoop, Partitions
from bridge.runtime.ports import RecordSource
from bridge.runtime.records import RecordPath

log = structlog.get_logger("bridge")

FETCH_BATCH = 500
IDLE_SLEEP_S = 0.01
PAUSED_POLL_S = 0.1  # while paused, the consumer is polled this often: callbacks, membership
COMMIT_RETRY_S = 0.1  # at shutdown, between commits a rebalance refused
LAG_INTERVAL_S = 5.0


@dataclass
class Parts:
    """What a bridge is made of (see the module)."""

    source: RecordSource
    listener: OnTheLoop  # the source's callbacks, handled on the bridge's event loop
    path: RecordPath
    partitions: Partitions
    outcomes: Outcomes
    health: Health
    back_pressure: BackPressure
    stop: Stop
    closers: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)  # at the end
    server: ObservabilityServer | None = None


class Bridge:
    """The long-lived consumer. ``await bridge.run()`` gives the exit code."""

    def __init__(
        self, config: BridgeConfig, mapper: Mapper, parts: Parts, *, until_caught_up: bool = False
    ) -> None:
        self.config, self.mapper, self.parts = config, mapper, parts
        self.source, self.path, self.partitions = parts.source, parts.path, parts.partitions
        self.sender, self.dead_letters, self.stopping = parts.path.sender, parts.path.dead_letters, parts.stop
        self.until_caught_up = until_caught_up
        # Consumer calls that serve librdkafka's callbacks run here, so that the event loop
        # keeps delivering while a revocation waits for the commands on the wire.
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="kafka")

    @property
    def counts(self) -> Counter[str]:
        return self.parts.outcomes.counts

    @property
    def failure(self) -> str | None:
        return self.stopping.failure

    async def run(self) -> int:
        self._install_signal_handlers()
        self.parts.listener.start()
        if self.parts.server is not None:
            await self.parts.server.start()
        await self._on_kafka_thread(self.source.start)
        log.info(
            "bridge_started",
            version=__version__,
            topics=self.config.source.topic_names,
            rules=len(self.mapper),
            max_in_flight=self.config.delivery.max_in_flight,
            observability_port=self.parts.server.port if self.parts.server else None,
        )
        background = [
            asyncio.create_task(self._every(self.config.delivery.commit_interval_ms / 1000, self.commit)),
            asyncio.create_task(self._every(self.config.log.summary_interval_s, self._summary)),
            asyncio.create_task(self._every(LAG_INTERVAL_S, self._update_lag)),
        ]
        try:
            await self._consume()
        finally:
            for task in background:
                task.cancel()
            await self._shutdown()
        return self.stopping.exit_code

    async def _consume(self) -> None:
        polled_at, ahead = 0.0, None
        while not self.stopping.requested:
            self.parts.health.went_round()
            now, records = time.monotonic(), []
            # Each consumer call wakes the Kafka thread, which takes the GIL from the event
            # loop (100 wakes a second cost several percent of the throughput): while paused
            # nothing arrives, so poll only as often as callbacks and membership need.
            if ahead is None and (not self.source.paused or now - polled_at >= PAUSED_POLL_S):
                ahead, polled_at = self._fetch(), now
            if ahead is not None:
                records, ahead = await ahead, None
            # Read the next batch on the Kafka thread while this one is handled, rather than
            # wait for it after. A callback it serves (a revocation) runs on this loop after
            # this batch, which is handled without a pause: it finds the batch's records tracked.
            offsets, batch_bytes = self.path.offsets, sum(r.size for r in records)
            with_ahead = (offsets.held() + len(records) + FETCH_BATCH, offsets.held_bytes() + 2 * batch_bytes)
            if records and self.parts.back_pressure.room(*with_ahead, self.source.paused, self._blocked):
                ahead = self._fetch()
            for record in records:
                if self.stopping.failure is not None:
                    break
                self.path.on_record(record)
            if self.dead_letters:
                self.dead_letters.poll()
            # While Intilery refuses the credentials, hold back; once no lane is left to
            # probe them (all revoked), resume so new records probe again.
            held, paused = offsets.held(), self.source.paused
            pause = self.parts.back_pressure.pause(held, offsets.held_bytes(), paused, self._blocked)
            if pause != paused:
                await self._on_kafka_thread(self.source.pause, pause)
            if fatal := self.source.fatal or (self.dead_letters and self.dead_letters.fatal):
                self.stopping.fail(f"Kafka: {fatal}", EXIT_KAFKA_FATAL)
            # Caught up only with nothing read ahead (the read ahead may end a partition).
            if self.until_caught_up and ahead is None and self._caught_up():
                log.info("caught_up")
                break
            await asyncio.sleep(0 if records else IDLE_SLEEP_S)
        if ahead is not None:
            await ahead  # read, never tracked, so never committed: the next owner reads them

    def _fetch(self) -> asyncio.Future[list[Record]]:
        return self._on_kafka_thread(self.source.fetch, FETCH_BATCH)

    @property
    def _blocked(self) -> bool:
        return self.sender.gate.auth_failed and len(self.path.lanes) > 0

    def _caught_up(self) -> bool:
        assigned, window, offsets = self.source.assigned, self.path.window, self.path.offsets
        if window is not None:
            read_all = all(
                key in self.source.at_end
                or window.finished(key, self.source.last_read.get(key, (-1, None))[0])
                for key in assigned
            )
        else:
            read_all = assigned <= self.source.at_end
        return (
            bool(assigned)
            and read_all
            and offsets.unfinished() == 0
            and not (offsets.uncommitted() and (window is None or window.commits))
            and not self.partitions.dead_letters_pending()
        )

    async def commit(self, wait: bool = False) -> bool:
        """Commit what changed since the last commit (``wait``: everything, synchronously;
        False when the broker refused it)."""
        positions, rebalances = self.partitions.committable(force=wait), self.source.rebalances
        return bool(await self._on_kafka_thread(self.source.commit, positions, wait, rebalances))

    async def _shutdown(self) -> None:
        grace, lanes, stopping = self.config.delivery.shutdown_grace_s, self.path.lanes, self.stopping
        stopping.begin(grace)  # a second SIGTERM/SIGINT ends the grace at once
        log.info("bridge_stopping", in_flight=self.sender.in_flight, grace_s=grace)
        await self._on_kafka_thread(self.source.pause, True)
        while stopping.left() > 0 and (len(lanes) or self.partitions.dead_letters_pending()):
            # Keep polling so the group keeps this member; records fetched now are never
            # tracked, so never committed: the next owner reads them.
            await self._fetch()
            if self.dead_letters:
                self.dead_letters.poll()
            await lanes.wait(0.05)
        abandoned = lanes.cancel(lambda lane: True)
        await asyncio.sleep(0)
        if self.dead_letters:
            self.dead_letters.flush(stopping.left())
        while not (committed := await self.commit(wait=True)) and stopping.left() > 0:
            # A rebalance under way refuses commits (REBALANCE_IN_PROGRESS, or ILLEGAL_GENERATION
            # for one sent while this member was rejoining, a cooperative rebalance's second
            # round): serve it, then commit again, rather than leave the work to be resent.
            await self._fetch()
            await asyncio.sleep(COMMIT_RETRY_S)
        left = {"read_again": self.path.offsets.held(), "to_send": self.path.offsets.unfinished()}
        await self._on_kafka_thread(self.source.close)
        self._kafka.shutdown()
        await self.release()
        if self.parts.server is not None:
            await self.parts.server.stop()
        self._summary()
        self.parts.outcomes.stopped(abandoned, stopping.failure, committed, **left)

    async def release(self) -> None:
        """Close what the parts hold open: the HTTP client, Redis, the schema registry."""
        for close in self.parts.closers:
            if inspect.isawaitable(closing := close()):
                await closing

    def _on_kafka_thread(self, call: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``call`` on the Kafka thread, under way from now (not from the first await)."""
        return asyncio.get_running_loop().run_in_executor(self._kafka, call, *args)

    def stop(self) -> None:
        """Stop on request (SIGTERM/SIGINT): commands in flight finish, queued ones are
        abandoned (left uncommitted, so whoever reads the partition next sends them)."""
        self.stopping.request()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name, grace=("ended" if self.stopping.draining else "started"))
        self.stop()

    async def _every(self, seconds: float, action: Callable[[], Awaitable[object] | None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                if (pending := action()) is not None:
                    await pending
            except Exception:  # keep committing and reporting whatever one round did
                log.exception("periodic_task_failed", task=getattr(action, "__name__", "?"))

    async def _update_lag(self) -> None:
        metrics = self.parts.outcomes.metrics
        for (topic, partition), records, seconds in await self._on_kafka_thread(self.source.lag):
            metrics.lag_records.labels(topic, str(partition)).set(records)
            metrics.lag_seconds.labels(topic, str(partition)).set(seconds)
        for (topic, partition), waited in self.path.offsets.waiting(time.monotonic()).items():
            metrics.oldest_unfinished.labels(topic, str(partition)).set(waited)

    def _summary(self) -> None:
        self.parts.outcomes.summary(
            in_flight=self.sender.in_flight,
            unfinished=self.path.offsets.held(),
            auth_failed=self.sender.gate.auth_failed,
        )
