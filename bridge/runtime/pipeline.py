"""Wires the stages: source → decode → map → deliver → commit.

:class:`Bridge` reads as the list of stage calls a record goes through
(:meth:`Bridge._on_record`, :meth:`Bridge._deliver`); each stage lives in its
own module. Delivery guarantees:

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
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaException

from bridge import __version__
from bridge.config import BridgeConfig, IntileryConfig
from bridge.decode.avro import SchemaNotCached
from bridge.decode.decoder import Decoder
from bridge.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    RecordError,
    RejectedError,
    RetryableError,
    StaleCommand,
)
from bridge.intilery.batching import Batcher
from bridge.intilery.client import Backoff, IntileryClient, Sender
from bridge.intilery.ratelimit import Limiter, RateLimiter
from bridge.intilery.redislimit import RedisRateLimiter, connect
from bridge.kafka.deadletter import DeadLetters
from bridge.kafka.offsets import OffsetTracker, PartitionOffsets
from bridge.kafka.source import Source, SourceListener, consumer_config
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.model import Command, Position, Record, TopicPartitionKey
from bridge.rules.mapping import Mapper
from bridge.runtime.lanes import Lanes
from bridge.runtime.observability import ObservabilityServer

log = structlog.get_logger("bridge")

FETCH_BATCH = 500
IDLE_SLEEP_S = 0.01
PAUSED_POLL_S = 0.1  # while paused, the consumer is polled this often: callbacks, membership
COMMIT_RETRY_S = 0.1  # at shutdown, between commits a rebalance refused
EXIT_OK, EXIT_PERMANENT_FAILURE, EXIT_KAFKA_FATAL = 0, 3, 4
COUNTS = (
    "consumed", "delivered", "dead_lettered", "skipped", "stale", "retries", "already_finished", "read_again"
)  # fmt: skip
NO_RULE = "-"  # label value where no rule or command applies
OUTAGE_AFTER_S = 10.0  # every attempt failing this long: not ready
LOOP_STALL_S = 30.0  # the consume loop not going round this long: not healthy
LAG_INTERVAL_S = 5.0


@dataclass(slots=True)
class Work:
    record: Record  # where the record was read: its offset is tracked and committed
    part: PartitionOffsets
    commands: list[Command] | None  # None: decoded in the lane, once its schema is fetched
    origin: Record  # what the rules see: the record itself, or for redrive its original


class Bridge:
    """The long-lived consumer. ``await bridge.run()`` gives the exit code."""

    def __init__(
        self,
        config: BridgeConfig,
        mapper: Mapper,
        source_name: str = "bridge.yaml",
        *,
        until_caught_up: bool = False,
        decoder: Decoder | None = None,
        window: Window | None = None,
        rate: float | None = None,
    ) -> None:
        """``window``: replay exactly these offsets (see :mod:`bridge.ops.replay`) instead of
        following the group; the bridge stops once every partition reached its end.
        ``rate``: requests/s of its own (replay, redrive) instead of a share of the
        account's (0: no limit); with Redis, what it sends at while Redis is away."""
        self.config = config
        self.mapper = mapper
        self.window = window
        self._topics = frozenset(config.source.topic_names)
        self.until_caught_up = until_caught_up or window is not None
        self.counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
        self.offsets = OffsetTracker()
        self.lanes: Lanes[Work] = Lanes(self._deliver)
        delivery = config.delivery
        self.metrics = Metrics()
        self._shared = config.intilery.rate_limit.share == "partitions" and rate is None
        self.limiter = self._rate_limiter(config.intilery, rate)
        self.client = IntileryClient(
            config.intilery, delivery.max_in_flight, limiter=self.limiter, metrics=self.metrics
        )
        post, in_flight = self.client.post, delivery.max_in_flight
        self.batcher: Batcher | None = None
        if delivery.batch is not None:
            # max_in_flight bounds requests; each request carries up to max_calls commands.
            self.batcher = Batcher(self.client, delivery.batch, delivery.max_in_flight)
            post, in_flight = self.batcher.post, delivery.max_in_flight * delivery.batch.max_calls
        self.sender = Sender(post, delivery.retry, in_flight, self._log_retry)
        self._backoff = Backoff(delivery.retry)
        self.decoder = decoder or Decoder(config.source, source_name)
        try:
            self.dead_letters = (
                DeadLetters.create(delivery.dead_letter_topic, config.kafka)
                if delivery.dead_letter_topic
                else None
            )
            kafka = {**config.kafka, "group.id": window.group} if window else config.kafka
            self._rebalances = _OnTheLoop(self)
            self.source = Source(
                consumer_config(kafka, config.source.start_from),
                [window.topic] if window else config.source.topic_names,
                self._rebalances,
                start_at_ms=config.source.start_at_ms if window is None else None,
                assignment=window.assignment() if window else None,
                count_partitions=self._shared and self.limiter is not None,
            )
        except KafkaException as exc:  # librdkafka refused a property
            raise ConfigError([f"{source_name}: kafka: {exc.args[0].str() if exc.args else exc}"]) from exc
        self.metrics.in_flight.set_function(lambda: self.sender.in_flight)
        self.metrics.unfinished.set_function(self.offsets.held)
        if self.limiter is not None:
            limiter = self.limiter
            self.metrics.rate_limit.set_function(lambda: limiter.rate)
        observe = config.observability
        self.server = (
            ObservabilityServer(self.metrics, self.health, self.readiness, observe.host, observe.port)
            if observe.enabled
            else None
        )
        self._loop_at = time.monotonic()
        self._stop = asyncio.Event()
        self.failure: str | None = None
        self._stopped_at: dict[TopicPartitionKey, int] = {}  # the record each failure stopped at
        self._draining = False
        self._releasing: set[TopicPartitionKey] = set()  # being revoked: send nothing new for them
        self._rewound: set[TopicPartitionKey] = set()  # read again from before the last read record
        # Consumer calls that serve librdkafka's callbacks run here, so that the event loop
        # keeps delivering while a revocation waits for the commands on the wire.
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="kafka")
        self.exit_code = EXIT_OK

    def _rate_limiter(self, intilery: IntileryConfig, own: float | None) -> Limiter | None:
        """The local bucket: the account's rate (shared by partitions) or ``own``; with
        Redis, the account's bucket there, the local one serving while Redis is away."""
        account = intilery.rate_limit
        per_second = account.per_second if own is None else own
        if per_second <= 0 or account.per_second <= 0:
            return None
        burst = account.burst if own is None else max(1, min(account.burst, round(own)))
        local = RateLimiter(per_second, burst, full=not self._shared)
        if account.redis is None:
            return local
        redis = account.redis
        password = redis.password.get_secret_value() if redis.password else None
        self.metrics.redis_up.set(1)
        return RedisRateLimiter(
            connect(redis.url, password, redis.ca_file),
            f"{redis.key_prefix}:{intilery.account_id}:{intilery.brand_id or '-'}",
            account.per_second,
            account.burst,
            local,
            on_state=lambda up: self.metrics.redis_up.set(1 if up else 0),
        )

    # --- the record path --------------------------------------------------

    def _on_record(self, record: Record) -> None:
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
        part.add(record.offset)
        self.counts["consumed"] += 1
        self.metrics.records.labels(record.topic).inc()
        if self.window is not None and not self.window.selects(record):
            self.counts["not_selected"] += 1  # a redrive's filters leave it for another run
            part.leave(record.offset)
            return
        if part.finished_earlier(record.offset):  # the last commit's map names it: sent before
            self.counts["already_finished"] += 1
            self.metrics.already_finished.inc()
            log.debug("record_already_finished", **_where(record))
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
            self._reject(record, part, exc, origin=self._origin_or(record))
            return
        if not commands:
            self._skip(record, part)
            return
        self.lanes.submit(lane, Work(record, part, commands, origin))

    def _origin_or(self, record: Record) -> Record:
        """The original record when it can be recovered, else the record as read."""
        try:
            return self.window.origin(record) if self.window is not None else record
        except RecordError:
            return record

    def _decode_and_map(self, record: Record) -> list[Command]:
        event = self.decoder.decode(record.topic, record.value)
        return self.mapper.map(event, record.meta())

    def _skip(self, record: Record, part: PartitionOffsets) -> None:
        self.counts["skipped"] += 1
        self.metrics.commands.labels(NO_RULE, NO_RULE, "skipped").inc()
        log.debug("record_skipped", **_where(record))
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
                    **_where(work.record),
                    attempt=attempt,
                    reason=exc.reason,
                    retry_in_ms=round(delay * 1000),
                )
                await asyncio.sleep(delay)
            except RecordError as exc:
                self._reject(work.record, work.part, exc, origin=work.origin)
                return None

    async def _deliver(self, work: Work) -> None:
        try:
            if work.commands is None:
                work.commands = await self._fetch_schema_then_map(work)
                if work.commands is None:
                    return
                if not work.commands:
                    self._skip(work.record, work.part)
                    return
            for command in work.commands:
                if self._draining or self._halted(work.record) or work.record.tp in self._releasing:
                    return  # stopping, revoked, or after a failed record of its partition: send no more
                try:
                    delivered = await self.sender.send(command, _where(work.record))
                except StaleCommand as stale:
                    self.counts["stale"] += 1
                    self.metrics.commands.labels(command.rule, command.name, "stale").inc()
                    log.info("command_stale", **_describe(command), **_where(work.record), reason=str(stale))
                    continue
                except RejectedError as exc:
                    exc.rule = command.rule
                    self._reject(work.record, work.part, exc, command, work.origin)
                    return
                self.counts["delivered"] += 1
                self.metrics.commands.labels(command.rule, command.name, "delivered").inc()
                if command.event_ms is not None:
                    self.metrics.event_to_ack.observe(max(0.0, time.time() - command.event_ms / 1000))
                log.info(
                    "command_delivered",
                    **_describe(command),
                    **_where(work.record),
                    attempt=delivered.attempt,
                    status=delivered.status,
                    latency_ms=round(delivered.latency_ms, 1),
                    eventId=delivered.event_id,
                )
            work.part.finish(work.record.offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: stop rather than commit past a record we did not finish
            log.exception("delivery_crashed", **_where(work.record))
            self._fail(f"internal error while delivering: {exc!r}", at=work.record)

    def _reject(
        self,
        record: Record,
        part: PartitionOffsets,
        error: RecordError,
        command: Command | None = None,
        origin: Record | None = None,
    ) -> None:
        """Dead-letter ``origin`` (the record itself unless redriving); then ``record`` is finished."""
        origin = origin or record
        fields = {
            **_where(origin),
            **(_describe(command) if command else {}),
            "rule": error.rule,
            "error_class": error.error_class,
            "reason": error.reason,
            "status": error.status,
        }
        if self.window is not None and self.window.redrive:
            # A dead letter that fails again stays where it is, its offset never committed
            # past, rather than being written again (the next redrive would read it twice).
            self.counts["failing_again"] += 1
            log.warning("redrive_failed_again", **fields, dead_letter=record.position)
            part.leave(record.offset)
            return
        if self.dead_letters is None:
            log.error("command_failed", **fields)
            self._fail(
                f"{record.position}: {error.error_class}: "
                f"{error.reason} (no delivery.dead_letter_topic is set, so the bridge stops)",
                at=record,
            )
            return

        def written() -> None:
            self.counts["dead_lettered"] += 1
            self.metrics.dead_letters.labels(error.error_class).inc()
            self.metrics.commands.labels(
                error.rule or NO_RULE, command.name if command else NO_RULE, "dead_lettered"
            ).inc()
            log.warning("command_dead_lettered", **fields)
            part.finish(record.offset)

        self.dead_letters.send(origin, error, written)

    def _log_retry(
        self, command: Command, attempt: int, error: DeliveryError, delay: float, context: Mapping[str, Any]
    ) -> None:
        self.counts["retries"] += 1
        self.metrics.commands.labels(command.rule, command.name, "retried").inc()
        event = "intilery_auth_failed" if self.sender.gate.auth_failed else "command_retry"
        emit = log.error if event == "intilery_auth_failed" else log.warning
        emit(
            event,
            **_describe(command),
            **context,
            attempt=attempt,
            status=error.status,
            reason=error.reason,
            retry_in_ms=round(delay * 1000),
        )

    # --- rebalance and commits ---------------------------------------------

    def _assigned(self, keys: list[TopicPartitionKey], finished: dict[TopicPartitionKey, set[int]]) -> None:
        for key in keys:
            self.offsets.assign(key, finished.get(key, ()))
        self._share_rate()

    def _share_rate(self) -> None:
        """The account's rate limit, shared by the group's replicas: each takes the share of
        the partitions it holds (``intilery.rate_limit.share: partitions``)."""
        total = self.source.partitions_total
        if self.limiter is None or not self._shared or not total:
            return
        before = self.limiter.limit
        self.limiter.share(len(self.offsets) / total)
        if self.limiter.limit != before:
            log.info(
                "rate_limit_shared",
                partitions=len(self.offsets),
                of=total,
                per_second=round(self.limiter.limit, 2),
                burst=round(self.limiter.capacity, 1),
            )

    async def _finish_revoked(self, keys: set[TopicPartitionKey]) -> list[Position]:
        """A clean hand-over: the commands on the wire for these partitions finish (within
        ``delivery.rebalance_grace_s``), nothing new starts; gives their last commit."""
        self._releasing |= keys
        grace = self.config.delivery.rebalance_grace_s
        deadline = time.monotonic() + grace
        finished = await self.lanes.wait(grace, lambda lane: lane[:2] in keys)  # type: ignore[index]
        while self._dead_letters_pending() and time.monotonic() < deadline:
            self.dead_letters.poll()  # type: ignore[union-attr]  # their records finish on delivery
            await asyncio.sleep(0.01)
        if not finished or self._dead_letters_pending():
            log.warning(
                "rebalance_grace_expired", partitions=sorted(f"{t}[{p}]" for t, p in keys), grace_s=grace
            )
        return self._committable(keys, force=True)

    def _shrink_map(self, refused_bytes: int | None) -> None:
        if self.offsets.shrink_map(refused_bytes):
            log.warning(
                "offset_map_too_large",
                refused_bytes=refused_bytes,
                limit_bytes=self.offsets.map_limit,
                hint="the broker's offset.metadata.max.bytes is below Kafka's default of 4096",
            )

    def _forget(self, keys: set[TopicPartitionKey]) -> None:
        for key in keys:
            self.offsets.revoke(key)
        self._abandon(keys)
        self._releasing -= keys
        self._share_rate()

    def _abandon(self, partitions: set[TopicPartitionKey]) -> None:
        """Cancel the lanes of these partitions; their records stay unfinished (uncommitted)."""
        self.lanes.cancel(lambda lane: lane[:2] in partitions)  # type: ignore[index]

    def _read_again(self, record: Record, part: PartitionOffsets) -> None:
        """The consumer went back to a record it had read (an offset reset, or librdkafka
        rewinding a partition after pause and resume): every record up to the last one
        read is tracked already (finished, on the wire or waiting), so it is not sent
        again; the partition goes on once the consumer passes the last one read."""
        if record.tp not in self._rewound:
            self._rewound.add(record.tp)
            log.warning("partition_rewound", **_where(record), last_read=part.last_added)
        self.counts["read_again"] += 1

    async def commit(self, wait: bool = False) -> bool:
        """Commit what changed since the last commit (``wait``: everything, synchronously;
        False when the broker refused it)."""
        positions, rebalances = self._committable(force=wait), self.source.rebalances
        return bool(await self._on_kafka_thread(self.source.commit, positions, wait, rebalances))

    def _committable(self, keys: set[TopicPartitionKey] | None = None, force: bool = False) -> list[Position]:
        if self.window is not None and not self.window.commits:
            return []
        positions = self.offsets.to_commit(keys, force)
        if left_out := sum(position.left_out for position in positions):
            self.metrics.map_overflow.inc(left_out)
        return positions

    # --- the loop -------------------------------------------------------------

    async def run(self) -> int:
        self._install_signal_handlers()
        self._rebalances.loop, self._rebalances.loop_thread = (
            asyncio.get_running_loop(),
            threading.get_ident(),
        )
        if self.server is not None:
            await self.server.start()
        await self._on_kafka_thread(self.source.start)
        log.info(
            "bridge_started",
            version=__version__,
            topics=self.config.source.topic_names,
            rules=len(self.mapper),
            max_in_flight=self.config.delivery.max_in_flight,
            observability_port=self.server.port if self.server else None,
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
        return self.exit_code

    async def _consume(self) -> None:
        max_buffered = self.config.delivery.max_buffered_records
        polled_at = 0.0
        while not self._stop.is_set():
            self._loop_at = time.monotonic()
            records: list[Record] = []
            # Each consumer call wakes the Kafka thread, which takes the GIL from the event
            # loop (100 wakes a second cost several percent of the throughput): while paused
            # nothing arrives, so poll only as often as callbacks and membership need.
            if not self.source.paused or self._loop_at - polled_at >= PAUSED_POLL_S:
                records = await self._on_kafka_thread(self.source.fetch, FETCH_BATCH)
                polled_at = self._loop_at
            for record in records:
                if self.failure is not None:
                    break
                self._on_record(record)
            if self.dead_letters:
                self.dead_letters.poll()
            held = self.offsets.held()
            # While Intilery refuses the credentials, hold back; once no lane is left to
            # probe them (all revoked), resume so new records probe again.
            blocked = self.sender.gate.auth_failed and len(self.lanes) > 0
            pause = blocked or held >= max_buffered or (self.source.paused and held > max_buffered // 2)
            if pause != self.source.paused:
                await self._on_kafka_thread(self.source.pause, pause)
            fatal = self.source.fatal or (self.dead_letters and self.dead_letters.fatal)
            if fatal:
                self._fail(f"Kafka: {fatal}", EXIT_KAFKA_FATAL)
            if self.until_caught_up and self._caught_up():
                log.info("caught_up")
                break
            await asyncio.sleep(0 if records else IDLE_SLEEP_S)

    def _caught_up(self) -> bool:
        assigned = self.source.assigned
        if self.window is not None:
            read_all = all(
                key in self.source.at_end
                or self.window.finished(key, self.source.last_read.get(key, (-1, None))[0])
                for key in assigned
            )
        else:
            read_all = assigned <= self.source.at_end
        return (
            bool(assigned)
            and read_all
            and self.offsets.unfinished() == 0
            and not (self.offsets.uncommitted() and (self.window is None or self.window.commits))
            and not self._dead_letters_pending()
        )

    async def _shutdown(self) -> None:
        grace = self.config.delivery.shutdown_grace_s
        deadline = time.monotonic() + grace
        log.info("bridge_stopping", in_flight=self.sender.in_flight, grace_s=grace)
        await self._on_kafka_thread(self.source.pause, True)
        while time.monotonic() < deadline and (len(self.lanes) or self._dead_letters_pending()):
            # Keep polling so the group keeps this member; records fetched now are never
            # tracked, so never committed: the next owner reads them.
            await self._on_kafka_thread(self.source.fetch, FETCH_BATCH)
            if self.dead_letters:
                self.dead_letters.poll()
            await self.lanes.wait(0.05)
        abandoned = self.lanes.cancel(lambda lane: True)
        await asyncio.sleep(0)
        if self.dead_letters:
            self.dead_letters.flush(max(0.0, deadline - time.monotonic()))
        while not await self.commit(wait=True) and time.monotonic() < deadline:
            # A rebalance under way refuses commits (REBALANCE_IN_PROGRESS, or ILLEGAL_GENERATION
            # for one sent while this member was rejoining, a cooperative rebalance's second
            # round): serve it, then commit again, rather than leave the work to be resent.
            await self._on_kafka_thread(self.source.fetch, FETCH_BATCH)
            await asyncio.sleep(COMMIT_RETRY_S)
        await self._on_kafka_thread(self.source.close)
        self._kafka.shutdown()
        await self.client.close()
        if isinstance(self.limiter, RedisRateLimiter):
            await self.limiter.close()
        if self.decoder.registry is not None:
            self.decoder.registry.close()
        if self.server is not None:
            await self.server.stop()
        self._summary()
        log.info("bridge_stopped", abandoned_lanes=abandoned, failure=self.failure)

    async def _on_kafka_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._kafka, call, *args)

    def _dead_letters_pending(self) -> bool:
        return bool(self.dead_letters and self.dead_letters.pending)

    # --- helpers -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop on request (SIGTERM/SIGINT): commands in flight finish, queued ones are
        abandoned (left uncommitted, so whoever reads the partition next sends them)."""
        self._draining = True
        self._stop.set()

    def _halted(self, record: Record) -> bool:
        stopped_at = self._stopped_at.get(record.tp)
        return stopped_at is not None and record.offset >= stopped_at

    def _fail(self, message: str, code: int = EXIT_PERMANENT_FAILURE, at: Record | None = None) -> None:
        """Stop the bridge; records from ``at`` on in its partition are never sent or finished."""
        if at is not None:
            self._stopped_at[at.tp] = min(at.offset, self._stopped_at.get(at.tp, at.offset))
        if self.failure is None:
            self.failure, self.exit_code = message, code
            log.error("bridge_failed", reason=message)
        self._stop.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal_received", signal=sig.name)
        self.stop()

    async def _every(self, seconds: float, action: Callable[[], Awaitable[object] | None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                if (pending := action()) is not None:
                    await pending
            except Exception:  # keep committing and reporting whatever one round did
                log.exception("periodic_task_failed", task=getattr(action, "__name__", "?"))

    # --- health ------------------------------------------------------------------

    def health(self) -> list[str]:
        stalled = time.monotonic() - self._loop_at
        return [f"the consume loop has not run for {stalled:.0f}s"] if stalled > LOOP_STALL_S else []

    def readiness(self) -> list[str]:
        reasons = []
        if not self.source.member:  # a member with no partitions is a ready standby
            reasons.append("not yet a member of the consumer group")
        if self.sender.gate.auth_failed:
            reasons.append("Intilery refuses the credentials (401/403)")
        failing = self.sender.failing_since
        if failing is not None and time.monotonic() - failing > OUTAGE_AFTER_S:
            reasons.append(f"every request to Intilery has failed for {time.monotonic() - failing:.0f}s")
        if self._stop.is_set():
            reasons.append("stopping")
        return reasons

    async def _update_lag(self) -> None:
        for (topic, partition), records, seconds in await self._on_kafka_thread(self.source.lag):
            self.metrics.lag_records.labels(topic, str(partition)).set(records)
            self.metrics.lag_seconds.labels(topic, str(partition)).set(seconds)

    def _summary(self) -> None:
        log.info(
            "bridge_summary",
            **self.counts,
            in_flight=self.sender.in_flight,
            unfinished=self.offsets.held(),
            auth_failed=self.sender.gate.auth_failed,
        )


class _OnTheLoop(SourceListener):
    """The bridge's side of the source's callbacks. They come on the Kafka thread (inside
    :meth:`Source.fetch`); each is handled on the event loop, the Kafka thread waiting
    for assignments and revocations, so that records of a partition are tracked before
    they are handled, and a revocation lets the commands on the wire finish first."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None

    def assigned(self, keys: list[TopicPartitionKey], finished: dict[TopicPartitionKey, set[int]]) -> None:
        self._wait(self._call(self._bridge._assigned, keys, finished))

    def revoked(self, keys: list[TopicPartitionKey], lost: bool) -> None:
        revoked = set(keys)
        if not lost:  # a lost partition may already be another member's: nothing to wait for
            self._bridge.source.commit(self._wait(self._bridge._finish_revoked(revoked)), wait=True)
        self._wait(self._call(self._bridge._forget, revoked))

    def committed(self, positions: list[Position]) -> None:
        self._soon(self._bridge.offsets.mark_committed, positions)

    def commit_failed(self, key: TopicPartitionKey | None) -> None:
        self._soon(self._bridge.offsets.commit_failed, key)

    def partitions_counted(self) -> None:
        self._soon(self._bridge._share_rate)

    def map_too_large(self, refused_bytes: int | None) -> None:
        self._soon(self._bridge._shrink_map, refused_bytes)

    def _wait(self, work: Awaitable[Any]) -> Any:
        assert self.loop is not None and threading.get_ident() != self.loop_thread, "would wait for itself"
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()  # type: ignore[arg-type]

    def _soon(self, call: Callable[..., None], *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(call, *args)

    @staticmethod
    async def _call(call: Callable[..., None], *args: Any) -> None:
        call(*args)


def _where(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _describe(command: Command) -> dict[str, Any]:
    body = command.body
    return {
        "rule": command.rule,
        "command": body.get("event"),
        "userId": body.get("userId"),
        "assetId": body.get("assetId"),
    }
