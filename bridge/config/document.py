"""The whole file (:class:`BridgeConfig`): its sections, the rules, and the checks across
sections."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from bridge.config.base import Model, as_dict, as_list, parse_duration, shown_default
from bridge.config.delivery import DeliveryConfig
from bridge.config.intilery import IntileryConfig
from bridge.config.source import SourceConfig


class TracingConfig(Model):
    otlp_endpoint: str | None = None
    """Export spans over OTLP/HTTP (protobuf) to this URL, a collector's traces endpoint such as
    `http://otel-collector:4318/v1/traces`: one per record, one per request to Intilery (see
    docs/operations.md, "Trace context"). Without it no span is exported; trace context still
    goes into the requests and the log lines.
    """
    timeout_s: float = Field(default=5.0, gt=0)
    """How long one export may take; a slower or absent collector costs spans (counted), never
    delivery.
    """
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Of the traces the bridge starts (records without a `traceparent`), the share sampled,
    decided on the trace id as OpenTelemetry's `TraceIdRatioBased` does; a record with a
    `traceparent` keeps its sampled flag (`ParentBased`). The decision goes into the
    `traceparent` sent to Intilery; spans of traces not sampled are not exported. Every log line
    still carries its ids.
    """


class ObservabilityConfig(Model):
    enabled: bool = True
    """Serve `/metrics`, `/healthz` and `/readyz`."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = Field(default=9400, ge=0, le=65535)
    """Port; `0` takes any free port (logged as `observability_port` in `bridge_started`)."""
    tracing: TracingConfig = TracingConfig()
    """Spans over OTLP."""


class LogConfig(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning` or `error`."""
    summary_interval_s: float = Field(default=30.0, gt=0)
    """How often the `bridge_summary` line is written."""
    hash_user_ids: bool = False
    """Write `userId` in log lines as `sha256:` and 16 hex digits of its SHA-256 instead of the id:
    lines of one customer still correlate, the id itself stays out of the logs.
    """


MAX_EMIT_DEPTH = 32  # objects and lists in a rule's emit (its body must serialise, as JSON must)


def nesting(value: Any, limit: int = MAX_EMIT_DEPTH + 1) -> int:
    """How deep objects and lists nest in ``value`` (counted no further than ``limit``)."""
    if limit <= 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((nesting(item, limit - 1) for item in items), default=0)


class DedupeConfig(Model):
    key: str = Field(min_length=1)
    """A template over the event and `_kafka` (`"{{ booking_id }}"`, `"{{ _kafka.headers.ce_id }}"`):
    the rule's command for a customer (`userId`) and this rendered key is sent once within
    `window`; hashed, so its size does not matter."""
    window: float = 86_400.0  # seconds; written as a duration such as 24h
    """A duration (`24h` by default): how long after Intilery accepted the command a copy is a
    duplicate."""

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class RuleConfig(Model):
    name: str = Field(min_length=1)
    """Unique; appears in logs, `map` output and dead-letter headers."""
    topics: list[str] | None = Field(default=None, json_schema_extra=shown_default("all source topics"))
    """Limit the rule to these topics (each must be in `source.topics`)."""
    when: str | None = Field(default=None, json_schema_extra=shown_default("always"))
    """A JMESPath condition on the event, with JMESPath truthiness: `false`, `null`, `""`, `[]` and
    `{}` are false; `0` is true.
    """
    max_age: float | None = None  # seconds; written as a duration such as 2h
    """Stale-event guard, a duration (`90s`, `15m`, `2h`, `1d`, `1h30m`): a command whose event time
    (the rendered `timestamp`, else the record's timestamp) is older than this when it would be
    sent (checked before every attempt) is skipped, counted and logged as `command_stale`, and
    its record committed. `replay` applies it too unless `--ignore-max-age`.
    """
    on_missing: Literal["empty", "skip", "dead_letter"] = "empty"
    """What a command whose template names a field the event does not have becomes: `empty`
    sends it without that key (a mixed text such as `"Hi {{ name }}"` leaves its key out
    too); `skip` sends nothing for the rule (the record goes on); `dead_letter` dead-letters
    the record (class `mapping`, the fields named). Each case is counted
    (`intilery_bridge_template_missing_total{rule,field}`) and logged once per rule and field
    (`template_field_missing`)."""
    emit: dict[str, Any]
    """The body to post, exactly as Intilery documents it, with templates; objects and lists
    nested at most 32 deep."""
    max_per_minute: int | None = Field(default=None, ge=1)
    """A flood breaker: the rule's commands beyond this many in any 60 s (across the group through
    `delivery.state.redis`; else each replica counts its own) are dead-lettered alone (class
    `held`), logged `command_held` (once a second at most) and counted
    (`intilery_bridge_commands_held_total{rule}`); `redrive --error-class held` sends them once
    someone has looked ([Customer safety](safety.md#a-flood-breaker))."""
    caps: bool = True
    """`false`: no frequency cap (`delivery.caps`) counts or holds back the rule's commands
    (transactional messages: a password reset is never capped)."""
    dedupe: DedupeConfig | None = None
    """Send the rule's command once per customer and key within a window, whatever the producers
    repeat ([Customer safety](safety.md)): a duplicate is not sent, not dead-lettered, but logged
    (`command_deduplicated`), counted (`intilery_bridge_commands_deduplicated_total{rule}`) and
    audited. Needs `delivery.state.redis` or `delivery.audit_topic`."""

    @field_validator("emit")
    @classmethod
    def _shallow(cls, value: dict[str, Any]) -> dict[str, Any]:
        if nesting(value) > MAX_EMIT_DEPTH:
            raise ValueError(f"nested more than {MAX_EMIT_DEPTH} levels deep")
        return value

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


# Consumer properties of the classic group protocol that KIP-848 moves to the broker.
CLASSIC_ONLY = {
    "session.timeout.ms": "the broker's group.consumer.session.timeout.ms applies",
    "heartbeat.interval.ms": "the broker's group.consumer.heartbeat.interval.ms applies",
    "partition.assignment.strategy": "the broker assigns (group.remote.assignor to choose its assignor)",
    "group.protocol.type": "only for the classic protocol",
}


class BridgeConfig(Model):
    kafka: dict[str, str | int | float | bool]
    """librdkafka consumer properties, passed through (security settings included).
    `bootstrap.servers` and `group.id` are required. The bridge sets `enable.auto.commit=false`,
    `enable.auto.offset.store=false` and `enable.partition.eof=true` itself; setting either auto-
    commit property to true is refused. With `group.protocol: consumer` (KIP-848) the broker owns
    the group's timing and assignment, so `session.timeout.ms`, `heartbeat.interval.ms`,
    `partition.assignment.strategy` and `group.protocol.type` are refused (naming the key); see
    [Scaling](operations.md#scaling) for choosing a protocol. `auto.offset.reset` decides where a new group
    starts (librdkafka's default is `latest`). The dead-letter producer uses the same properties
    minus consumer-only ones, with `acks=all` and idempotence on.
    """
    source: SourceConfig
    """What to consume and how to decode it."""
    intilery: IntileryConfig
    """Intilery's API: where, who, and how fast."""
    delivery: DeliveryConfig = DeliveryConfig()
    """How commands are sent, retried, batched and committed."""
    log: LogConfig = LogConfig()
    """Log lines (JSON, one per line, on standard output)."""
    observability: ObservabilityConfig = ObservabilityConfig()
    """The `/metrics`, `/healthz` and `/readyz` endpoints."""
    rules: list[RuleConfig] = Field(min_length=1, json_schema_extra=shown_default("at least one"))
    """Evaluated in order for every record; see below."""

    def unverified_tls(self) -> list[tuple[str, str]]:
        """(service, setting) for each connection whose certificate or host name goes
        unchecked: anyone on the path could stand in for it. ``check`` warns of each, and
        the bridge logs ``tls_verification_disabled`` at start-up."""
        found = []
        for key, off in (
            ("enable.ssl.certificate.verification", "false"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ):
            if str(self.kafka.get(key, "")).strip().lower() == off:
                found.append(("kafka", f"kafka.{key}: {off}"))
        redis = self.intilery.rate_limit.redis
        if redis is not None and "ssl_cert_reqs=none" in redis.url.lower():
            found.append(("redis", "intilery.rate_limit.redis.url: ssl_cert_reqs=none"))
        return found


def cross_problems(raw: dict[str, Any]) -> list[str]:
    """Checks across sections, on the raw data, so they report beside field errors."""
    problems = []
    kafka = as_dict(raw.get("kafka"))
    for key in ("bootstrap.servers", "group.id"):
        if key not in kafka:
            problems.append(f"kafka.{key}: required")
    if "group.id" in kafka and not blank_free(kafka["group.id"]):
        problems.append("kafka.group.id: must not be empty")
    start_from = as_dict(raw.get("source")).get("start_from")
    if start_from is not None and "auto.offset.reset" in kafka:
        problems.append("kafka.auto.offset.reset: set source.start_from or this, not both")
    if str(kafka.get("group.protocol", "classic")).lower() == "consumer":
        problems += [
            f"kafka.{key}: not allowed with group.protocol: consumer (KIP-848); {instead}"
            for key, instead in CLASSIC_ONLY.items()
            if key in kafka
        ]
    problems += [
        f"kafka.{key}: must not be true; the bridge commits offsets after delivery"
        for key in ("enable.auto.commit", "enable.auto.offset.store")
        if str(kafka.get(key, "false")).lower() == "true"
    ]
    grace = as_dict(raw.get("delivery")).get("rebalance_grace_s", 5.0)
    poll_interval = kafka.get("max.poll.interval.ms", 300_000)
    with contextlib.suppress(TypeError, ValueError):  # the fields' own checks report bad types
        if float(grace) * 1000 >= float(poll_interval):
            problems.append(
                "delivery.rebalance_grace_s: must be shorter than kafka.max.poll.interval.ms "
                f"({poll_interval} ms): the group waits for it in a rebalance"
            )
    known = set(raw_topic_names(raw))
    delivery = as_dict(raw.get("delivery"))
    problems += written_topic_problems(delivery, known)
    remembered = as_dict(delivery.get("state")).get("redis") is not None or delivery.get("audit_topic")
    problems += cap_problems(delivery, bool(remembered))
    names: set[str] = set()
    for index, rule in enumerate(as_list(raw.get("rules"))):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        where = f"rules[{index}] ({name})"
        if isinstance(name, str) and name in names:
            problems.append(f"{where}.name: duplicate rule name")
        names.add(str(name))
        unknown = sorted(str(t) for t in as_list(rule.get("topics")) if t not in known)
        if unknown and known:
            problems.append(f"{where}.topics: not in source.topics: {', '.join(unknown)}")
        if rule.get("max_per_minute") is not None and not delivery.get("dead_letter_topic"):
            problems.append(
                f"{where}.max_per_minute: needs delivery.dead_letter_topic for the commands it holds"
            )
        if rule.get("dedupe") is not None and not remembered:
            problems.append(
                f"{where}.dedupe: needs delivery.state.redis (shared by every replica) or "
                "delivery.audit_topic (the process' own ledger, rebuilt from it)"
            )
    return problems


def cap_problems(delivery: dict[str, Any], remembered: bool) -> list[str]:
    """Caps need somewhere to count, a dead-letter topic for what they hold back, and names
    of their own."""
    problems = []
    names: set[str] = set()
    for index, cap in enumerate(as_list(delivery.get("caps"))):
        name = as_dict(cap).get("name")
        where = f"delivery.caps[{index}] ({name})"
        if name in names:
            problems.append(f"{where}.name: duplicate cap name")
        names.add(str(name))
        if not remembered:
            problems.append(f"{where}: needs delivery.state.redis or delivery.audit_topic to count in")
        if not delivery.get("dead_letter_topic"):
            problems.append(f"{where}: needs delivery.dead_letter_topic for the commands it holds back")
    return problems


def written_topic_problems(delivery: dict[str, Any], sources: set[str]) -> list[str]:
    """The topics the bridge writes must not be read as events, nor one the other."""
    problems = []
    dead_letter_topic, audit_topic = delivery.get("dead_letter_topic"), delivery.get("audit_topic")
    if isinstance(dead_letter_topic, str) and dead_letter_topic in sources:
        problems.append(
            "delivery.dead_letter_topic: is also a source topic; dead letters would be read again"
        )
    if isinstance(audit_topic, str) and audit_topic in sources:
        problems.append("delivery.audit_topic: is also a source topic; audit entries would be read as events")
    elif isinstance(audit_topic, str) and audit_topic == dead_letter_topic:
        problems.append("delivery.audit_topic: is also the dead-letter topic; redrive would send its entries")
    return problems


def raw_topic_names(raw: dict[str, Any]) -> list[str]:
    topics = as_list(as_dict(raw.get("source")).get("topics"))
    return [t if isinstance(t, str) else str(as_dict(t).get("name")) for t in topics]


def blank_free(value: Any) -> bool:
    """Whether a group id is usable: not empty, not only spaces, no NUL (confluent-kafka
    aborts the process on a consumer whose group id librdkafka reads as empty)."""
    text = str(value)
    return bool(text.strip()) and "\x00" not in text
