"""Builds a :class:`~bridge.runtime.pipeline.Bridge` from its configuration: the
Intilery client and rate limit, the decoder, the dead-letter writer, the Kafka
source, the record path, the partitions' hand-over, health and the HTTP server.
The bridge itself only receives its parts, so a test can hand it fakes."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import structlog

from bridge.config import BridgeConfig, DeliveryConfig
from bridge.decode.decoder import Decoder
from bridge.decode.registry import registry_for
from bridge.errors import ConfigError
from bridge.intilery.batching import Batcher
from bridge.intilery.client import IntileryClient
from bridge.intilery.ratelimit import Limiter, Pace, pacer
from bridge.intilery.redislimit import RedisRateLimiter, connect, rate_limiter
from bridge.intilery.sending import Sender
from bridge.kafka.audit import AuditLog
from bridge.kafka.consumer import consumer_config
from bridge.kafka.deadletter import DeadLetters
from bridge.kafka.sentlog import SentLog, sent_once
from bridge.kafka.source import Source
from bridge.kafka.window import Window
from bridge.metrics import Metrics
from bridge.rules.mapping import Mapper
from bridge.runtime.auditing import Audit
from bridge.runtime.checkpoint import Checkpoint
from bridge.runtime.events import KafkaEvents
from bridge.runtime.health import BackPressure, Health, Stop
from bridge.runtime.observability import ObservabilityServer
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.partitions import Partitions
from bridge.runtime.pipeline import Bridge, BridgeParts
from bridge.runtime.records import RecordPath
from bridge.runtime.shadow import Shadow
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.runtime.worker import KafkaWorker
from bridge.safety.caps import Cap, CapCounts, Caps, MemoryCaps, RedisCaps, cap_key, place_of
from bridge.safety.dedupe import Dedupe
from bridge.safety.ledger import Ledger, MemoryLedger, RedisLedger, holder_of
from bridge.safety.state import State

if TYPE_CHECKING:
    from bridge.spans import Spans

log = structlog.get_logger("bridge")


@contextlib.contextmanager
def start_up_frozen() -> Iterator[None]:
    """Run a bridge inside, once built: what start-up made (modules, configuration, rules)
    lives as long as the bridge, so it is moved out of the garbage collector's sight; its
    full collections, frequent under load, then scan only what the records make (about a
    tenth of the CPU per record in ``make bench``'s batch mode). Back in sight after."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def build_bridge(
    config: BridgeConfig,
    mapper: Mapper,
    source_name: str = "bridge.yaml",
    *,
    until_caught_up: bool = False,
    decoder: Decoder | None = None,
    window: Window | None = None,
    rate: float | None = None,
    guard_stale: bool = True,
    shadow: Mapper | None = None,
    dedupe: bool = True,
    caps: bool = True,
) -> Bridge:
    """``window``: replay exactly these offsets (:mod:`bridge.ops.replay`), stopping once every
    partition reached its end. ``rate``: requests/s of its own (replay, redrive; 0: no limit)
    instead of a share of the account's; with Redis the account's bucket paces it, ``rate``
    only while Redis is away. ``guard_stale``: skip commands past their rule's ``max_age``.
    ``shadow``: a candidate's rules, mapped beside the live ones (``run --shadow``).
    ``dedupe``: False sends rules' dedupe copies too (``replay --ignore-dedupe``); ``caps``:
    False sends past the caps and the rules' flood breakers (``replay --ignore-caps``)."""
    for service, setting in config.unverified_tls():
        log.warning("tls_verification_disabled", service=service, setting=setting)
    metrics = Metrics()
    stop = Stop()
    states = Assignment()
    events = KafkaEvents()
    tracing = config.observability.tracing
    spans = exporting(tracing.otlp_endpoint, tracing.timeout_s, metrics.spans_dropped.inc)
    outcomes = Outcomes(metrics, spans, tracing.sample_ratio)
    intilery = intilery_stage(config, metrics, outcomes, rate, guard_stale)
    decoder = decoder or Decoder(config.source, source_name, registry_for(config.source))
    writing = kafka_stage(config, source_name, events, window, intilery.shared, metrics)
    kafka = KafkaWorker(writing.source)
    source, sinks = writing.source, writing.sinks
    safety = safety_stage(config, metrics, window, dedupe, caps)
    path = record_stage(
        config, (mapper, shadow), decoder, intilery, writing, states, outcomes, stop, window, safety
    )
    stuck_after_s = config.delivery.stuck_after_s
    health = Health(
        source,
        intilery.sender,
        stop,
        sinks=sinks,
        states=states,
        stuck_after_s=stuck_after_s,
        safety=safety.state,
    )
    checkpoint, partitions = partitions_stage(
        config, metrics, kafka, source, states, sinks, intilery, window, safety.caps
    )
    parts = BridgeParts(
        kafka=kafka,
        events=events,
        path=path,
        states=states,
        checkpoint=checkpoint,
        partitions=partitions,
        sender=intilery.sender,
        sinks=sinks,
        outcomes=outcomes,
        health=health,
        back_pressure=BackPressure(config.delivery.max_buffered_records, config.delivery.max_buffered_bytes),
        stop=stop,
        closers=[
            *intilery.closers,
            *([decoder.registry.close] if decoder.registry is not None else []),
            *safety.closers,
        ],
        server=observability_stage(config, metrics, health, intilery, states),
    )
    return Bridge(config, mapper, parts, until_caught_up=until_caught_up or window is not None)


def partitions_stage(
    config: BridgeConfig,
    metrics: Metrics,
    kafka: KafkaWorker,
    source: Source,
    states: Assignment,
    sinks: OwnTopicSinks,
    intilery: IntileryStage,
    window: Window | None,
    caps: Caps | None,
) -> tuple[Checkpoint, Partitions]:
    """The checkpoint and the partitions' hand-over: what the consumer tells is handed to
    them by the bridge (:meth:`~bridge.runtime.events.KafkaEvents.serving`)."""
    checkpoint = Checkpoint(states, kafka, metrics, window)
    partitions = Partitions(
        source,
        states,
        checkpoint,
        metrics,
        grace_s=config.delivery.rebalance_grace_s,
        sinks=sinks,
        limiter=intilery.limiter if intilery.shared else None,
        breaker=caps if caps is not None and not caps.shared else None,
        local_state=local_state_in_use(config) and window is None,
        window=window,
    )
    return checkpoint, partitions


@dataclass(frozen=True)
class IntileryStage:
    """The sender to Intilery, the rate limiter pacing it, and what to close at the end."""

    sender: Sender
    limiter: Limiter | None
    shared: bool  # the limiter takes this replica's share of the account's rate
    closers: list[Callable[[], Awaitable[None] | None]]


def intilery_stage(
    config: BridgeConfig, metrics: Metrics, outcomes: Outcomes, rate: float | None, guard_stale: bool
) -> IntileryStage:
    """The sender to Intilery: the account's rate limiter (the partitions' share of it, or
    ``rate`` of its own), the HTTP client, and one request per command or batches."""
    delivery = config.delivery
    shared = config.intilery.rate_limit.share == "partitions" and rate is None
    limiter = rate_limiter(config.intilery, rate, shared, metrics)
    pace = pacer(limiter, metrics.limiter_wait.inc) if limiter is not None else None
    client = IntileryClient(
        config.intilery,
        delivery.max_in_flight,
        limiter=limiter,
        metrics=metrics,
        pace=pace if delivery.batch is not None else None,  # batched: each request is paced
        longest_wait_s=delivery.retry.max_backoff_ms / 1000,
    )
    sender = command_sender(delivery, client, pace, outcomes, guard_stale)
    closers: list[Callable[[], Awaitable[None] | None]] = [client.close]
    if outcomes.spans is not None:
        closers.append(outcomes.spans.close)
    if isinstance(limiter, RedisRateLimiter):
        closers.append(limiter.close)
    return IntileryStage(sender, limiter, shared and limiter is not None, closers)


def command_sender(
    delivery: DeliveryConfig,
    client: IntileryClient,
    pace: Pace | None,
    outcomes: Outcomes,
    guard_stale: bool,
) -> Sender:
    """One request per command (the sender paces each and spans it), or with
    ``delivery.batch`` requests of up to ``max_calls`` commands: ``max_in_flight`` requests
    at once, so ``max_in_flight * max_calls`` commands (the client paces each request, the
    batch request has the span)."""
    if delivery.batch is None:
        return Sender(
            client.post,
            delivery.retry,
            delivery.max_in_flight,
            outcomes.retried,
            pace=pace,
            guard_stale=guard_stale,
            spans=outcomes.spans,
        )
    batcher = Batcher(client, delivery.batch, delivery.max_in_flight, outcomes.spans)
    return Sender(
        batcher.post,
        delivery.retry,
        delivery.max_in_flight * delivery.batch.max_calls,
        outcomes.retried,
        guard_stale=guard_stale,
        children=False,
    )


def record_stage(
    config: BridgeConfig,
    rules: tuple[Mapper, Mapper | None],
    decoder: Decoder,
    intilery: IntileryStage,
    writing: KafkaStage,
    states: Assignment,
    outcomes: Outcomes,
    stop: Stop,
    window: Window | None,
    safety: SafetyStage | None = None,
) -> RecordPath:
    """The record path: decode, map, deliver (or dead-letter) each record; ``rules``: the
    live ones, and the shadow's (a candidate's, mapped beside them) or None."""
    mapper, shadow = rules
    return RecordPath(
        decoder=decoder,
        mapper=mapper,
        sender=intilery.sender,
        dead_letters=writing.dead_letters,
        audit=Audit.configured(writing.audit, config, window),
        states=states,
        outcomes=outcomes,
        stop=stop,
        retry=config.delivery.retry,
        topics=frozenset(config.source.topic_names),
        window=window,
        shadow=Shadow(shadow, outcomes.metrics) if shadow is not None else None,
        dedupe=safety.dedupe if safety is not None else None,
        caps=safety.caps if safety is not None else None,
        group=safety.group if safety is not None else "",
    )


@dataclass(frozen=True)
class SafetyStage:
    """Customer safety: the dedupe ledger and the frequency caps, asked through one state."""

    dedupe: Dedupe | None  # None: replay --ignore-dedupe
    caps: Caps | None  # delivery.caps and the rules' flood breakers (None: replay --ignore-caps)
    state: State
    group: str  # names a record holding a key or a place: the group reading it
    closers: list[Callable[[], Awaitable[None] | None]]


def safety_stage(
    config: BridgeConfig, metrics: Metrics, window: Window | None, dedupe: bool, capping: bool
) -> SafetyStage:
    """In Redis with ``delivery.state.redis`` (every replica, replay and redrive share it), else
    in this process, rebuilt from the audit topic. ``dedupe``, ``capping``: False leaves that
    check out (neither asked nor told)."""
    state = config.delivery.state
    group = window.group if window is not None else str(config.kafka["group.id"])
    caps = [Cap(cap.name, frozenset(cap.commands), cap.max, cap.window) for cap in config.delivery.caps]
    if state.redis is None:
        memory = MemoryLedger(state.max_entries, on_evicted=metrics.dedupe_evicted.inc)
        local = MemoryCaps()
        asking = State()
        rebuild_state(config, memory, local, Caps(local, caps, asking, shared=False))
        ledger: Ledger = memory
        counts: CapCounts = local
        closers: list[Callable[[], Awaitable[None] | None]] = []
    else:
        password = state.redis.password.get_secret_value() if state.redis.password else None
        client = connect(state.redis.url, password, state.redis.ca_file)
        metrics.state_up.set(1)
        asking = State(on_state=lambda up: metrics.state_up.set(int(up)))
        ledger = RedisLedger(client, state.redis.key_prefix)
        counts = RedisCaps(client, state.redis.key_prefix)
        closers = [client.aclose]
    once = Dedupe(ledger, state.reservation_s, state=asking) if dedupe else None
    return SafetyStage(
        once,
        Caps(counts, caps, asking, shared=state.redis is not None) if capping else None,
        asking,
        group,
        [once.close, *closers] if once is not None else closers,
    )


def local_state_in_use(config: BridgeConfig) -> bool:
    """Whether a rule's dedupe, a cap or a flood breaker keeps its state in this process."""
    rules = config.rules
    in_use = config.delivery.caps or any(r.dedupe is not None or r.max_per_minute for r in rules)
    return bool(in_use) and config.delivery.state.redis is None


def rebuild_state(
    config: BridgeConfig, ledger: MemoryLedger, counts: MemoryCaps, caps: Caps, timeout_s: float = 60.0
) -> None:
    """The process' own state, as the audit topic shows it: the commands this deployment's
    group sent within their rules' dedupe windows and their caps' windows (valid for one
    replica)."""
    windows = {rule.name: rule.dedupe.window for rule in config.rules if rule.dedupe is not None}
    uncapped = {rule.name for rule in config.rules if not rule.caps}
    longest = max([*windows.values(), *(cap.window for cap in config.delivery.caps)], default=0)
    topic = config.delivery.audit_topic
    if not longest or topic is None:
        return
    group = str(config.kafka["group.id"])
    started = time.time()
    found, complete = sent_once(config.kafka, topic, group, int((started - longest) * 1000), timeout_s)
    kept = 0
    for sent in found:
        age = time.time() - sent.sent_ms / 1000
        holder = holder_of(group, *sent.source)
        if sent.key is not None and (left := windows.get(sent.rule, 0) - age) > 0:
            ledger.seed(sent.key, holder, sent.event_id, left)
            kept += 1
        for cap in caps.counting(sent.command) if sent.rule not in uncapped else []:
            if age < cap.window_s:
                counts.seed(cap_key(cap.name, sent.user), place_of(holder, sent.rule), age)
    took_ms = round((time.time() - started) * 1000)
    log.info("dedupe_ledger_rebuilt", sent=len(found), kept=kept, complete=complete, took_ms=took_ms)


def kafka_stage(
    config: BridgeConfig,
    source_name: str,
    listener: KafkaEvents,
    window: Window | None,
    count_partitions: bool,
    metrics: Metrics,
) -> KafkaStage:
    """The consumer (the group's, or a window's own), the dead-letter and audit writers."""
    delivery = config.delivery
    try:
        dead_letters = (
            DeadLetters.create(delivery.dead_letter_topic, config.kafka)
            if delivery.dead_letter_topic
            else None
        )
        if dead_letters is not None:
            dead_letters.on_failure = metrics.dead_letter_write_failures.inc
        audit = AuditLog.create(delivery.audit_topic, config.kafka) if delivery.audit_topic else None
        if audit is not None:
            audit.on_failure = metrics.audit_write_failures.inc
        kafka = {**config.kafka, "group.id": window.group} if window else config.kafka
        looked_up = delivery.audit_topic if audit is not None and window is None else None
        source = Source(
            consumer_config(kafka, config.source.start_from),
            [window.topic] if window else config.source.topic_names,
            listener,
            start_at_ms=config.source.start_at_ms if window is None else None,
            assignment=window.assignment() if window else None,
            count_partitions=count_partitions,
            sent_log=SentLog(kafka, looked_up, str(kafka["group.id"])) if looked_up else None,
        )
    except ConfigError as exc:  # librdkafka refused a property
        raise ConfigError([f"{source_name}: {problem}" for problem in exc.problems]) from exc
    return KafkaStage(source, dead_letters, audit)


@dataclass(frozen=True)
class KafkaStage:
    """The consumer, and the bridge's own writes: dead letters, audit entries."""

    source: Source
    dead_letters: DeadLetters | None
    audit: AuditLog | None

    @cached_property
    def sinks(self) -> OwnTopicSinks:
        return OwnTopicSinks(self.dead_letters, self.audit)


def observability_stage(
    config: BridgeConfig, metrics: Metrics, health: Health, intilery: IntileryStage, states: Assignment
) -> ObservabilityServer | None:
    """The gauges read when scraped, and the server of /metrics, /healthz and /readyz."""
    sender, limiter = intilery.sender, intilery.limiter
    metrics.in_flight.set_function(lambda: sender.in_flight)
    metrics.unfinished.set_function(states.held)
    if limiter is not None:
        metrics.rate_limit.set_function(lambda: limiter.rate)
    observe = config.observability
    if not observe.enabled:
        return None
    return ObservabilityServer(
        metrics, health.health, health.readiness, observe.host, observe.port, health.membership
    )


def exporting(endpoint: str | None, timeout_s: float, dropped: Callable[[int], None]) -> Spans | None:
    """The span exporter ``observability.tracing`` asks for, or None: the OpenTelemetry SDK
    is imported only then (it costs a bridge without it a third of a second at start)."""
    if not endpoint:
        return None
    from bridge.spans import Spans

    return Spans(endpoint, dropped, timeout_s)
