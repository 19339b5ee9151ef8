"""`delivery`: how commands are sent, retried, batched and committed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from bridge.config.base import Model, parse_duration, shown_default
from bridge.config.intilery import StateRedisConfig


class RetryConfig(Model):
    initial_backoff_ms: int = Field(default=200, ge=1)
    """First retry delay; doubles each attempt, with jitter (half to all of the step)."""
    max_backoff_ms: int = Field(default=30_000, ge=1)
    """Cap on the retry delay, and on how long a `Retry-After` from Intilery is honoured (an
    answer asking for ten years, or `inf`, would hold every request)."""
    max_attempts: int | None = Field(default=None, ge=1, json_schema_extra=shown_default("unlimited"))
    """Give up after this many attempts and dead-letter the record (class `rejected`, reason `gave
    up after N attempts: ...`). Auth failures never give up.
    """
    auth_backoff_ms: int = Field(default=30_000, ge=1)
    """Delay between attempts while Intilery answers 401/403."""


class BatchConfig(Model):
    max_calls: int = Field(default=100, ge=1)
    """Commands per batch request at most."""
    max_bytes: int = Field(default=1_000_000, ge=1024, le=1024 * 1024)
    """Bytes per batch request at most (Intilery: 1 MB; every call is already at most 32 KB)."""
    linger_ms: float = Field(default=20, ge=0)
    """How long a command waits for others to share its request."""


class StateConfig(Model):
    redis: StateRedisConfig | None = None
    """Where the ledger of commands sent once lives: in Redis, shared by every replica (without
    it, in the process: valid for one replica)."""
    reservation_s: float = Field(default=300.0, gt=0)
    """How long a command's dedupe key stays reserved by a record whose owner stopped answering
    (it died): then another record may send it. A live owner renews its reservation while its
    command is being sent (retries included)."""
    max_entries: int = Field(default=1_000_000, ge=1)
    """Without Redis: the keys the process keeps at most (about 350 bytes each); past that, those
    nearest the end of their window go first (`intilery_bridge_dedupe_evicted_total`)."""


SendCommand = Literal["send_email", "send_sms", "send_print", "send_push"]
SENDS: list[SendCommand] = ["send_email", "send_sms", "send_print", "send_push"]


class CapConfig(Model):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Unique; in the dead letter's `x-bridge-cap` header, logs and metrics."""
    commands: list[SendCommand] = Field(default=SENDS, min_length=1)
    """The commands the cap counts (every `send_*` by default)."""
    max: int = Field(ge=1)
    """At most this many of them accepted per customer (`userId`) within `window`."""
    window: float  # seconds; written as a duration such as 1h
    """A duration (`1h`, `1d`): the sliding window the commands are counted over."""

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class DeliveryConfig(Model):
    max_in_flight: int = Field(default=32, ge=1, le=1024)
    """Requests in flight at once across all partitions (one command per request, or one batch in
    batch mode); also the size of the HTTP connection pool.
    """
    max_buffered_records: int = Field(default=10_000, ge=1)
    """Fetched but unfinished records; at this many the consumer pauses its partitions (it keeps
    polling, so it stays in the group) and resumes below half. The last fetch (500 records at
    most) may pass it; the next batch is read ahead only while it fits below it.
    """
    max_buffered_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Bytes (keys, values and headers) of fetched but unfinished records; whichever of this and
    `max_buffered_records` is reached first pauses the consumer, which resumes below half of both.
    """
    stuck_after_s: float = Field(default=300.0, gt=0)
    """A partition whose commit has not moved for this long while its records wait makes
    `/readyz` fail, naming it (see `intilery_bridge_oldest_unfinished_seconds`).
    """
    dead_letter_topic: str | None = None
    """Where permanent failures go (not one of the source topics). Without it, the first permanent
    failure stops the bridge (exit 3) with that offset uncommitted.
    """
    audit_topic: str | None = None
    """Where every command Intilery accepted is written, one JSON record each keyed by its userId:
    which event it came from, which rule and rules version made it, how it went, its trace id, and
    whether it was sent before (see docs/operations.md, "Audit topic"). Each entry is written before
    its record's offset is committed; while the topic refuses writes, commits wait. Not one of the
    source topics, nor the dead-letter topic.
    """
    audit_include_body: bool = False
    """Write each command's body (its merge fields: customer data) in its audit entry too."""
    skip_audited: bool = True
    """With `audit_topic`: a partition taken over from a bridge that did not hand it over cleanly
    (a crash) has its audit entries since the last commit looked up, and the commands they show
    Intilery accepted are not sent again (`command_already_sent`). `false`: they are sent again,
    their entries marked `resent`.
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
    caps: list[CapConfig] = []
    """Frequency caps per customer ([Customer safety](safety.md#frequency-caps)): a command over a
    cap is dead-lettered alone (class `capped`, header `x-bridge-cap`), the record's other
    commands go on. Needs `dead_letter_topic`, and `state.redis` or `audit_topic`."""
    state: StateConfig = StateConfig()
    """The ledger of commands sent once, for rules with `dedupe` ([Customer safety](safety.md))."""
