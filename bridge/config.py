"""The YAML configuration: ``${ENV}`` expansion and pydantic models.

Takes a path, gives a validated :class:`BridgeConfig`, raises
:class:`~bridge.errors.ConfigError` with one line per problem, each naming the
file and the field (``bridge.yaml: rules[2] (abandoned-sms).when: ...``).
Rule expressions and templates are compiled by :mod:`bridge.rules.mapping`, which
reports its problems in the same form.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge import timestamps
from bridge.errors import ConfigError

_ENV = re.compile(r"\$(\$)?\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?)\}")


class _Model(BaseModel):
    # A docstring under a field is its description: the JSON Schema (`schema`) shows it.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


Format = Literal["json", "avro"]


def shown_default(text: str) -> dict[str, Any]:
    """What the reference shows as a field's default when its value says too little
    (``None`` for "the account id", "unlimited", "all source topics")."""
    return {"x-shown-default": text}


class TopicConfig(_Model):
    """One source topic; ``schema`` is a local .avsc for plain (unframed) Avro."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )

    name: str = Field(min_length=1)
    """The topic."""
    format: Format | None = Field(default=None, json_schema_extra=shown_default("`source.format`"))
    """`json` or `avro` for this topic."""
    schema_path: str | None = Field(default=None, alias="schema")
    """An `.avsc` file: the topic holds plain Avro binary written with this schema, no framing.
    Without it an `avro` topic uses the schema registry wire format. A relative path is taken
    from the config file's folder (then, if not found there, from the current directory).
    """


class TlsConfig(_Model):
    """Certificate checks for an HTTPS endpoint: on by default."""

    verify: bool = True
    """Check the server's certificate. `false` turns checks off and logs `tls_verification_disabled`
    (warning) at start-up.
    """
    ca_file: str | None = Field(default=None, json_schema_extra=shown_default("system CAs"))
    """A PEM bundle to trust instead of the system's CAs (a private CA, a TLS-inspecting proxy);
    must exist at start-up.
    """

    @model_validator(mode="after")
    def _ca_needs_verify(self) -> TlsConfig:
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is unused with verify: false; remove one")
        return self

    def context(self) -> ssl.SSLContext | bool:
        """What an HTTP client takes: False (no checks), or the context to verify with."""
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True


class SchemaRegistryConfig(_Model):
    url: str
    """The registry's URL (Confluent Schema Registry, Karapace, Apicurio's ccompat API)."""
    basic_auth: SecretStr | None = None
    """`user:password` for the registry; never logged."""
    tls: TlsConfig = TlsConfig()
    """Certificate checks for the registry's HTTPS endpoint."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("basic_auth")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and ":" not in value.get_secret_value():
            raise ValueError("expected USER:PASSWORD (no colon found)")
        return value

    @model_validator(mode="after")
    def _credentials_once(self) -> SchemaRegistryConfig:
        if self.basic_auth and self.basic_auth.get_secret_value() and urlsplit(self.url).username:
            raise ValueError("credentials both in url and in basic_auth; give them once (basic_auth)")
        return self


class SourceConfig(_Model):
    topics: list[str | TopicConfig] = Field(min_length=1)
    """Topics to consume (at least one): names, or objects `{name, format, schema}` (see
    [Avro](#avro-topics)); both forms can be mixed.
    """
    format: Format = "json"
    """Default format of the topics: `json` (a UTF-8 JSON object per record) or `avro`."""
    schema_registry: SchemaRegistryConfig | None = None
    """A Confluent-compatible schema registry, for `avro` topics without a local `schema`."""
    start_from: str | None = None
    """Where a group starts on partitions it has never committed: `earliest`, `latest`, or an
    ISO-8601 time (the first record at or after it). Sets `auto.offset.reset` (so do not set
    both). See [Operations](#operations) for the risks.
    """

    @field_validator("start_from")
    @classmethod
    def _start(cls, value: str | None) -> str | None:
        if value is None or value in ("latest", "earliest"):
            return value
        try:
            timestamps.parse_time(value)
        except ValueError as exc:
            raise ValueError("latest, earliest or an ISO-8601 time") from exc
        return value

    @property
    def start_at_ms(self) -> int | None:
        if self.start_from in (None, "latest", "earliest"):
            return None
        return int(timestamps.parse_time(self.start_from).timestamp() * 1000)

    @property
    def topic_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.topics]

    def resolved(self) -> list[TopicConfig]:
        """Every topic as a TopicConfig with its format filled in."""
        return [
            TopicConfig(name=t, format=self.format)
            if isinstance(t, str)
            else TopicConfig(name=t.name, format=t.format or self.format, schema=t.schema_path)
            for t in self.topics
        ]

    @model_validator(mode="after")
    def _avro_needs_a_schema(self) -> SourceConfig:
        names = self.topic_names
        if len(set(names)) != len(names):
            raise ValueError("source.topics: a topic is listed twice")
        for index, topic in enumerate(self.resolved()):
            where = f"source.topics[{index}] ({topic.name})"
            if topic.schema_path and topic.format != "avro":
                raise ValueError(f"{where}.schema: only for format avro")
            if topic.format == "avro" and not topic.schema_path and self.schema_registry is None:
                raise ValueError(f"{where}: format avro without a schema needs source.schema_registry.url")
        return self


class RedisConfig(_Model):
    """A Redis that every replica, replay and redrive of the account draw one bucket from."""

    url: str
    """`redis://host:6379/0` (`rediss://` for TLS): every replica, `replay` and `redrive` of the
    account draw from one GCRA bucket in Redis (an atomic Lua script on Redis' clock; key
    `<key_prefix>:<account_id>:<brand_id>`), and a `Retry-After` one of them is given holds back
    all of them. Redis not answering within 0.5 s: each process falls back at once to its local
    bucket (its partition share; replay and redrive their `--rate`), logs
    `rate_limit_redis_unavailable` once per episode, sets `intilery_bridge_rate_limit_redis_up`
    to 0, asks Redis again every 5 s and logs `rate_limit_redis_restored` when it answers.
    """
    password: SecretStr | None = None
    """Redis' password (`${REDIS_PASSWORD}`: a secret, never logged; a password in the URL is
    redacted too).
    """
    ca_file: str | None = None
    """A PEM bundle to trust for `rediss://`."""
    key_prefix: str = "intilery-bridge"
    """The bucket's key prefix."""

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss:// (TLS)")
        return value


class RateLimitConfig(_Model):
    per_second: float = Field(default=100.0, ge=0)
    """The Intilery account's limit (Intilery's documented one), not a replica's: each replica of
    the group takes its share (see `share`). Paces every request (a batch is one request). `0`
    turns the limiter off.
    """
    burst: int = Field(default=500, ge=1)
    """The bucket's size. The bridge keeps 10% of it in reserve so network jitter never makes
    requests reach Intilery faster than its own bucket refills. On a 429 (another client shares
    the account) the bridge halves its rate, honours `Retry-After`, and regains a tenth of the
    limit per second.
    """
    # partitions: each replica takes per_second and burst times its share of the
    # partitions (README "Scaling"); whole: each takes all of them
    share: Literal["partitions", "whole"] = "partitions"
    """`partitions`: each replica takes `per_second` and `burst` times the share of the topics'
    partitions it holds, recomputed on every assignment and revocation (`rate_limit_shared` log
    line, `intilery_bridge_rate_limit_per_second`), and starts with an empty bucket (the others
    may have spent the account's burst). `whole`: each replica takes all of it (one replica per
    account, or you divide by hand).
    """
    redis: RedisConfig | None = None  # exact sharing through Redis (README "Scaling")
    """Exact sharing of the account's rate through Redis (README "Scaling")."""


class IntileryConfig(_Model):
    url: str = "https://tracking.intilery.com"
    """Base URL. Requests go to `{url}/track/{client_id}/{account_id}/{BRAND_ID}/v1/{action}`."""
    client_id: str = Field(min_length=1)
    """Sent lower case."""
    account_id: str = Field(min_length=1)
    """Sent lower case."""
    brand_id: str | None = Field(default=None, json_schema_extra=shown_default("`account_id`"))
    """Sent upper case."""
    auth_token: SecretStr
    """Sent as the `auth-token` header. Never logged (every log line is also scrubbed of it)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Per-request timeout (connect: at most 5 s). A timeout is retried; Intilery may have taken the
    command it did not answer in time, so a timeout can mean a duplicate. After one, the
    following requests wait twice as long (`intilery_timeout_stretched`, up to `max_timeout_s`),
    so a slow Intilery is not sent the same command again and again; as answers speed up the
    timeout returns to this value (never below four times the latest answer's time).
    """
    max_timeout_s: float = Field(default=60.0, gt=0)
    """How far time-outs may stretch the timeout."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    """Pacing of the requests to the account (Intilery's limit: 100 requests/s, burst 500)."""
    tls: TlsConfig = TlsConfig()
    """Certificate checks for Intilery's HTTPS endpoint."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value)

    @property
    def brand(self) -> str:
        return (self.brand_id or self.account_id).upper()

    def endpoint(self, action: str) -> str:
        client, account = self.client_id.lower(), self.account_id.lower()
        return f"{self.url}/track/{client}/{account}/{self.brand}/v1/{action}"


class RetryConfig(_Model):
    initial_backoff_ms: int = Field(default=200, ge=1)
    """First retry delay; doubles each attempt, with jitter (half to all of the step)."""
    max_backoff_ms: int = Field(default=30_000, ge=1)
    """Cap on the retry delay."""
    max_attempts: int | None = Field(default=None, ge=1, json_schema_extra=shown_default("unlimited"))
    """Give up after this many attempts and dead-letter the record (class `rejected`, reason `gave
    up after N attempts: ...`). Auth failures never give up.
    """
    auth_backoff_ms: int = Field(default=30_000, ge=1)
    """Delay between attempts while Intilery answers 401/403."""


class BatchConfig(_Model):
    max_calls: int = Field(default=100, ge=1)
    """Commands per batch request at most."""
    max_bytes: int = Field(default=1_000_000, ge=1024, le=1024 * 1024)
    """Bytes per batch request at most (Intilery: 1 MB; every call is already at most 32 KB)."""
    linger_ms: float = Field(default=20, ge=0)
    """How long a command waits for others to share its request."""


class DeliveryConfig(_Model):
    max_in_flight: int = Field(default=32, ge=1, le=1024)
    """Requests in flight at once across all partitions (one command per request, or one batch in
    batch mode); also the size of the HTTP connection pool.
    """
    max_buffered_records: int = Field(default=10_000, ge=1)
    """Fetched but unfinished records; at this many the consumer pauses its partitions (it keeps
    polling, so it stays in the group) and resumes below half.
    """
    dead_letter_topic: str | None = None
    """Where permanent failures go (not one of the source topics). Without it, the first permanent
    failure stops the bridge (exit 3) with that offset uncommitted.
    """
    commit_interval_ms: int = Field(default=100, ge=10)
    """How soon finished work is committed: at most this often, only when something changed
    (asynchronously; synchronously on revocation and shutdown). What a crash can resend grows
    with it.
    """
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight commands may take to finish."""
    rebalance_grace_s: float = Field(default=5.0, ge=0)
    """When partitions are revoked in a rebalance, how long the commands already sent for them may
    take to finish before they are committed and released (nothing new starts meanwhile). It must
    be shorter than `max.poll.interval.ms` (refused otherwise), and should be well under it: with
    eager assignors the whole group waits for it.
    """
    retry: RetryConfig = RetryConfig()
    """Retries of transient failures (network, 5xx, 429, time-outs)."""
    batch: BatchConfig | None = None
    """Batch mode: post to `/v1/batch` instead of one command per request to `/v1/track` or
    `/v1/identify`.
    """


class ObservabilityConfig(_Model):
    enabled: bool = True
    """Serve `/metrics`, `/healthz` and `/readyz`."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = Field(default=9400, ge=0, le=65535)
    """Port; `0` takes any free port (logged as `observability_port` in `bridge_started`)."""


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning` or `error`."""
    summary_interval_s: float = Field(default=30.0, gt=0)
    """How often the `bridge_summary` line is written."""
    hash_user_ids: bool = False
    """Write `userId` in log lines as `sha256:` and 16 hex digits of its SHA-256 instead of the id:
    lines of one customer still correlate, the id itself stays out of the logs.
    """


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``, ``500ms`` or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (text := value.replace(" ", "")) and _DURATION_PART.sub("", text) == "":
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError("a duration such as 90s, 15m, 2h, 1d or 1h30m")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


class RuleConfig(_Model):
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
    emit: dict[str, Any]
    """The body to post, exactly as Intilery documents it, with templates."""

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


class BridgeConfig(_Model):
    kafka: dict[str, str | int | float | bool]
    """librdkafka consumer properties, passed through (security settings included).
    `bootstrap.servers` and `group.id` are required. The bridge sets `enable.auto.commit=false`,
    `enable.auto.offset.store=false` and `enable.partition.eof=true` itself; setting either auto-
    commit property to true is refused. With `group.protocol: consumer` (KIP-848) the broker owns
    the group's timing and assignment, so `session.timeout.ms`, `heartbeat.interval.ms`,
    `partition.assignment.strategy` and `group.protocol.type` are refused (naming the key); see
    [Scaling](#scaling) for choosing a protocol. `auto.offset.reset` decides where a new group
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


def cross_problems(raw: dict[str, Any]) -> list[str]:
    """Checks across sections, on the raw data, so they report beside field errors."""
    problems = []
    kafka = as_dict(raw.get("kafka"))
    for key in ("bootstrap.servers", "group.id"):
        if key not in kafka:
            problems.append(f"kafka.{key}: required")
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
    dead_letter_topic = as_dict(raw.get("delivery")).get("dead_letter_topic")
    if isinstance(dead_letter_topic, str) and dead_letter_topic in known:
        problems.append(
            "delivery.dead_letter_topic: is also a source topic; dead letters would be read again"
        )
    names: set[str] = set()
    for index, rule in enumerate(_list(raw.get("rules"))):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        where = f"rules[{index}] ({name})"
        if isinstance(name, str) and name in names:
            problems.append(f"{where}.name: duplicate rule name")
        names.add(str(name))
        unknown = sorted(str(t) for t in _list(rule.get("topics")) if t not in known)
        if unknown and known:
            problems.append(f"{where}.topics: not in source.topics: {', '.join(unknown)}")
    return problems


def raw_topic_names(raw: dict[str, Any]) -> list[str]:
    topics = _list(as_dict(raw.get("source")).get("topics"))
    return [t if isinstance(t, str) else str(as_dict(t).get("name")) for t in topics]


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one (for raw, unvalidated YAML)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def expand_env(node: Any, env: Mapping[str, str], problems: list[str] | None, path: str = "") -> Any:
    """Replace ``${VAR}``, ``${VAR:-default}`` and ``${file:/path}`` (a file's content, for
    container secrets) in every string; ``$${`` is a literal ``${``."""
    if isinstance(node, dict):
        return {k: expand_env(v, env, problems, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, problems, _item_path(path, i, v)) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        escaped, file, name, has_default, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if file is not None:
            return read_secret_file(file.strip(), path, problems)
        if env.get(name):
            return env[name]
        if has_default:  # as in a shell, ${VAR:-default} also replaces an empty VAR
            return default or ""
        if name in env:
            return ""
        if problems is not None:  # None: lenient, for offline tools like `map`
            problems.append(f"{path}: environment variable {name} is not set")
        return ""

    return _ENV.sub(substitute, node)


def read_secret_file(file: str, path: str, problems: list[str] | None) -> str:
    """The content of a mounted secret (``${file:/run/secrets/x}``), without its final newline."""
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        if problems is not None:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{path}: cannot read secret file {file}: {reason}")
        return ""


def _item_path(path: str, index: int, item: Any) -> str:
    """``rules[2] (abandoned-sms)`` for a named rule, else ``path[index]``."""
    name = item.get("name") if isinstance(item, dict) and path == "rules" else None
    return f"{path}[{index}] ({name})" if isinstance(name, str) and "${" not in name else f"{path}[{index}]"


MAX_CONFIG_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000


class StrictLoader(yaml.SafeLoader):
    """YAML that cannot silently lose a key or blow up: a duplicate key is an error (the
    last one would win), and so is a document whose aliases expand to more than
    ``MAX_EXPANDED_NODES`` values (an alias bomb: a few lines that ``${VAR}`` expansion,
    which copies every alias, would turn into gigabytes)."""

    def compose_document(self) -> Any:
        document = super().compose_document()
        sizes: dict[int, int] = {}

        def expanded(node: Any) -> int:  # each node once: aliases share their node
            if id(node) not in sizes:
                children = node.value if isinstance(node.value, list) else []
                pairs = [n for child in children for n in (child if isinstance(child, tuple) else (child,))]
                sizes[id(node)] = 1 + sum(expanded(child) for child in pairs)
            return sizes[id(node)]

        if document is not None and expanded(document) > MAX_EXPANDED_NODES:
            problem = f"aliases expand to more than {MAX_EXPANDED_NODES:,} values"
            raise yaml.composer.ComposerError(None, None, problem, document.start_mark)
        return document

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                problem = f"duplicate key {key!r} (the last one would silently win)"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_raw(path: str | Path, loader: type[StrictLoader] = StrictLoader) -> dict[str, Any]:
    """The parsed YAML mapping; ConfigError if it cannot be read or parsed."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror}"]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{name}: larger than {MAX_CONFIG_BYTES >> 20} MB; not a configuration file?"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text (byte {exc.start + 1} cannot be decoded)"]) from exc
    try:
        raw = yaml.load(text, Loader=loader)  # a SafeLoader: no arbitrary objects
    except RecursionError as exc:
        raise ConfigError([f"{name}: invalid YAML: nested too deeply"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{name}: invalid YAML{where}: {problem}"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError([f"{name}: the top level must be a mapping of sections"])
    return raw


def validate(expanded: dict[str, Any]) -> tuple[BridgeConfig | None, list[str]]:
    """The model, or None, and every problem: field errors and cross-section checks."""
    problems = cross_problems(expanded)
    try:
        config = BridgeConfig.model_validate(expanded)
    except ValidationError as exc:
        return None, describe_validation(exc, expanded) + problems
    return (None if problems else config), problems


def read_expanded(
    path: str | Path, env: Mapping[str, str] | None = None, strict_env: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """The file's mapping with ``${VAR}`` expanded, and the unset variables as problems
    (none when ``strict_env`` is false: they expand to empty strings)."""
    raw = read_raw(path)
    problems = list(unterminated_references(raw))
    expanded = expand_env(raw, os.environ if env is None else env, problems if strict_env else None)
    return expanded, problems


def unterminated_references(node: Any, path: str = "") -> Iterator[str]:
    """A ``${`` that starts no valid reference (``${CLIENT_ID`` without its ``}``) would
    otherwise be kept literally and sent."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from unterminated_references(value, _join(path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from unterminated_references(item, _item_path(path, index, item))
    elif isinstance(node, str) and "${" in _ENV.sub("", node).replace("$${", ""):
        yield f"{path}: a ${{ without a matching }} or a valid variable name; write $${{ for a literal ${{"


def without_env_echoes(problems: list[str], env_problems: list[str]) -> list[str]:
    """Drop field errors at a path already reported as an unset variable."""
    unset = {_bare(p.split(": ")[0]) for p in env_problems}
    return [p for p in problems if _bare(p.split(": ")[0]) not in unset]


def _bare(path: str) -> str:
    return re.sub(r" \([^)]*\)", "", path)


def describe_validation(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """One line per pydantic error, with the rule's name beside its index."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.append(message)
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{field_path(loc, raw)}: {message}")
    return lines


def field_path(loc: tuple[Any, ...], raw: Any) -> str:
    """``('rules', 2, 'emit')`` → ``rules[2] (abandoned-sms).emit``."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"  # rules and topics are easier found by name
        else:
            out = _join(out, str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
