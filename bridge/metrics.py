"""Prometheus metrics of one bridge (its own registry, so several can share a process).

Every metric is documented in docs/operations.md ("Metrics and health"); names start with
``intilery_bridge_``.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from bridge import __version__

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_EVENT_AGE = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400, 604800)

M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """A labelled metric's children, each looked up once: ``labels()`` converts, checks
    and locks on every call, a cost paid per record on the delivery path."""

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class RulesMetrics:
    """The rules in force, reloads of them, a shadow's differences from them, and the fields
    their templates did not find."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.info = Gauge(
            "intilery_bridge_rules_info",
            "1 for the version of the rules in force (rules_version in the log lines).",
            ["rules_version"],
            registry=r,
        )
        self.reloads = Children(
            Counter(
                "intilery_bridge_config_reloads",
                "Reloads of the rules (SIGHUP, run --watch) by result: ok, failed (the old rules go on).",
                ["result"],
                registry=r,
            )
        )
        for result in ("ok", "failed"):  # both shown from the start, at 0
            self.reloads(result)
        self.shadow_commands = LabelledCounts(
            "intilery_bridge_shadow_commands",
            "With run --shadow: the candidate's commands against the live ones, by rule and "
            "difference (added, removed, changed, unchanged); nothing is sent for the candidate.",
            ("rule", "difference"),
        )
        r.register(self.shadow_commands)
        self.template_missing = LabelledCounts(
            "intilery_bridge_template_missing",
            "Templates whose field the event did not have, by rule and field (the template's "
            "expression); the rule's on_missing decided what was sent.",
            ("rule", "field"),
        )
        r.register(self.template_missing)


class LabelledCounts:
    """A labelled counter kept as a plain dict by the event loop and read when scraped: per
    command, ``labels()`` and ``inc()`` (a lock each) cost more than what is counted."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in dict(self.counts).items():  # a copy: the loop goes on counting
            family.add_metric(values, count)
        yield family


class Metrics:
    """Every family of the bridge, each declared here (the rules' in :class:`RulesMetrics`)
    but ``redis_up``, registered only by a bridge that uses Redis."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        # What became of the records and their commands.
        self.records = Children(
            Counter("intilery_bridge_records_consumed", "Records read from Kafka.", ["topic"], registry=r)
        )
        self.commands = Children(
            Counter(
                "intilery_bridge_commands",
                "Commands by rule, command and outcome (delivered, dead_lettered, skipped, stale, "
                "incomplete, retried, already_sent).",
                ["rule", "command", "outcome"],
                registry=r,
            )
        )
        self.dead_letters = Children(
            Counter(
                "intilery_bridge_dead_letters",
                "Records written to the dead-letter topic.",
                ["error_class"],
                registry=r,
            )
        )
        self.dead_letter_write_failures = Counter(
            "intilery_bridge_dead_letter_write_failures",
            "Dead-letter writes refused (each retry counted): the records wait, uncommitted.",
            registry=r,
        )
        self.spans_dropped = Counter(
            "intilery_bridge_spans_dropped",
            "Spans not exported (observability.tracing): the queue full, or the collector refusing.",
            registry=r,
        )
        self.audit_write_failures = Counter(
            "intilery_bridge_audit_write_failures",
            "Audit-topic writes refused (each retry counted): the records wait, uncommitted.",
            registry=r,
        )
        self.deduplicated = Children(
            Counter(
                "intilery_bridge_commands_deduplicated",
                "Commands not sent: a copy of one Intilery accepted within the rule's dedupe window.",
                ["rule"],
                registry=r,
            )
        )
        self.capped = Children(
            Counter(
                "intilery_bridge_commands_capped",
                "Commands over a frequency cap (delivery.caps), dead-lettered alone.",
                ["cap"],
                registry=r,
            )
        )
        self.held = Children(
            Counter(
                "intilery_bridge_commands_held",
                "Commands past their rule's flood breaker (max_per_minute), dead-lettered alone.",
                ["rule"],
                registry=r,
            )
        )
        self.dedupe_evicted = Counter(
            "intilery_bridge_dedupe_evicted",
            "Keys the process' own ledger dropped before their window ended (delivery.state.max_entries).",
            registry=r,
        )
        self._state_up: Gauge | None = None
        self.already_finished = Counter(
            "intilery_bridge_records_already_finished",
            "Records read again whose commands the last commit's map named finished: not sent again.",
            registry=r,
        )
        self.map_overflow = Counter(
            "intilery_bridge_offset_map_overflow",
            "Finished offsets left out of a commit's map (over offset.metadata.max.bytes): sent again "
            "if the partition is read again from that commit.",
            registry=r,
        )
        # Per partition: how far behind, how long the oldest record waits, what was lost.
        self.lag_records = Gauge(
            "intilery_bridge_consumer_lag_records",
            "High watermark minus position.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "intilery_bridge_consumer_lag_seconds",
            "Age of the last record read, while the partition has records left to read.",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_unfinished = Gauge(
            "intilery_bridge_oldest_unfinished_seconds",
            "How long the oldest record read and not yet finished has waited (0: none waits).",
            ["topic", "partition"],
            registry=r,
        )
        self.records_lost = Counter(
            "intilery_bridge_records_lost_to_retention",
            "Records deleted (by retention) before the bridge read them: a committed offset older "
            "than the partition's first.",
            ["topic", "partition"],
            registry=r,
        )
        self.unfinished = Gauge(
            "intilery_bridge_unfinished_records",
            "Records fetched and not yet committed past (finished ones behind an unfinished one included).",
            registry=r,
        )
        # Requests to Intilery: their duration, how many at once, the rate and its waits.
        self.http = Children(
            Histogram(
                "intilery_bridge_http_request_duration_seconds",
                "Requests to Intilery by HTTP status (error: no answer).",
                ["status"],
                buckets=_SECONDS,
                registry=r,
            )
        )
        self.in_flight = Gauge("intilery_bridge_in_flight_commands", "Commands being sent now.", registry=r)
        self.rate_limit = Gauge(
            "intilery_bridge_rate_limit_per_second",
            "Requests per second this process may send now: its share of the account's limit, "
            "less any back-off after 429s.",
            registry=r,
        )
        self._redis_up: Gauge | None = None
        self.limiter_wait = Counter(
            "intilery_bridge_limiter_wait_seconds", "Time requests waited for the rate limiter.", registry=r
        )
        self.event_to_ack = Histogram(
            "intilery_bridge_event_to_ack_seconds",
            "From the event's time to Intilery's acknowledgement.",
            buckets=_EVENT_AGE,
            registry=r,
        )
        self.rules = RulesMetrics(r)
        self._per_partition = (self.lag_records, self.lag_seconds, self.oldest_unfinished)
        self.ready = Gauge("intilery_bridge_ready", "1 when /readyz answers 200.", registry=r)
        Info("intilery_bridge_build", "The running version.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

    @property
    def redis_up(self) -> Gauge:
        """Registered when first used, which only a bridge with ``intilery.rate_limit.redis``
        does: without Redis a 0 would read as Redis down."""
        if self._redis_up is None:
            self._redis_up = Gauge(
                "intilery_bridge_rate_limit_redis_up",
                "1 while the account's bucket in Redis answers, 0 while the local bucket stands in.",
                registry=self.registry,
            )
        return self._redis_up

    @property
    def state_up(self) -> Gauge:
        """Registered when first used, by a bridge whose rules dedupe: 1 while the ledger of
        commands sent once answers, 0 while the commands that need it wait."""
        if self._state_up is None:
            self._state_up = Gauge(
                "intilery_bridge_state_up",
                "1 while the ledger of commands sent once answers; 0 while the commands that need it wait.",
                registry=self.registry,
            )
        return self._state_up

    def forget_partition(self, topic: str, partition: int) -> None:
        """A partition revoked: its gauges go, or a stale age would keep an alert firing."""
        for gauge in self._per_partition:
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
