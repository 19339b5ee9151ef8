"""`intilery`: the API's address and account, its rate limit, and Redis to share it."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.config.base import Model, TlsConfig, check_url, one_line_secret, shown_default


class RedisConfig(Model):
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
    password_file: str | None = None
    """A file holding Redis' password (a mounted Secret), read at start-up instead of `password`."""
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

    @field_validator("password")
    @classmethod
    def _one_line(cls, value: SecretStr | None) -> SecretStr | None:
        return value and one_line_secret(value)


class StateRedisConfig(RedisConfig):
    """A Redis that every replica, replay and redrive keep the commands sent once in."""

    url: str
    """`redis://host:6379/0` (`rediss://` for TLS): the ledger of commands sent once (rules'
    `dedupe`), shared by every replica, `replay` and `redrive` of the group: one atomic Lua
    script per step, each key expiring with its window (`<key_prefix>:once:<hash>`). Redis not
    answering within 0.5 s: nothing is guessed, the commands that need it wait (see [Customer
    safety](safety.md)).
    """


class RateLimitConfig(Model):
    per_second: float = Field(default=100.0, ge=0)
    """The Intilery account's limit (Intilery's documented one), not a replica's: each replica of
    the group takes its share (see `share`). Paces every request (a batch is one request). `0`
    turns the limiter off.
    """
    burst: int = Field(default=500, ge=1)
    """The bucket's size. The bridge keeps 10% of it in reserve, and at least a quarter second of
    requests at `per_second` (up to half of it), so network jitter never makes requests reach
    Intilery faster than its own bucket refills. On a 429 (another client shares
    the account) the bridge halves its rate, honours `Retry-After`, and regains a tenth of the
    limit per second.
    """
    # partitions: each replica takes per_second and burst times its share of the
    # partitions (docs/operations.md, "Scaling"); whole: each takes all of them
    share: Literal["partitions", "whole"] = "partitions"
    """`partitions`: each replica takes `per_second` and `burst` times the share of the topics'
    partitions it holds, recomputed on every assignment and revocation (`rate_limit_shared` log
    line, `intilery_bridge_rate_limit_per_second`), and starts with an empty bucket (the others
    may have spent the account's burst). `whole`: each replica takes all of it (one replica per
    account, or you divide by hand).
    """
    redis: RedisConfig | None = None  # exact sharing through Redis (docs/operations.md, "Scaling")
    """Exact sharing of the account's rate through Redis (docs/operations.md, "Scaling")."""


class IntileryConfig(Model):
    url: str = "https://tracking.intilery.com"
    """Base URL. Requests go to `{url}/track/{client_id}/{account_id}/{BRAND_ID}/v1/{action}`.
    `http://` is refused unless the host is loopback (a local sandbox) or `allow_insecure_http`
    is true: the token would travel in clear text. A redirect from Intilery is no rejection of
    the command but a setup error: every request is held, `/readyz` names where it points.
    """
    allow_insecure_http: bool = False
    """Allow `http://` to a host that is not loopback (a TLS-terminating proxy on a private
    network); the auth token then travels unencrypted to it.
    """
    client_id: str = Field(min_length=1)
    """Sent lower case."""
    account_id: str = Field(min_length=1)
    """Sent lower case."""
    brand_id: str | None = Field(default=None, json_schema_extra=shown_default("`account_id`"))
    """Sent upper case."""
    auth_token: SecretStr
    """Sent as the `auth-token` header. Never logged (every log line is also scrubbed of it).
    One trailing newline (a secret file written with `echo`) is removed with a warning; an
    empty value, other control characters and non-ASCII are refused (the value never shown).
    """
    auth_token_file: str | None = None
    """A file holding the token (a mounted Kubernetes Secret), read at start-up instead of
    `auth_token`, with the same checks.
    """
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
        return check_url(value)

    @field_validator("auth_token")
    @classmethod
    def _usable_token(cls, value: SecretStr) -> SecretStr:
        return one_line_secret(value, header=True)

    @model_validator(mode="after")
    def _token_encrypted(self) -> IntileryConfig:
        host = urlsplit(self.url).hostname or ""
        if self.url.startswith("http://") and not self.allow_insecure_http and not _loopback(host):
            raise ValueError(
                f"url: http:// to {host} would send the auth token in clear text; use https:// "
                "(or set intilery.allow_insecure_http: true)"
            )
        return self

    @property
    def brand(self) -> str:
        return (self.brand_id or self.account_id).upper()

    def endpoint(self, action: str) -> str:
        client, account = self.client_id.lower(), self.account_id.lower()
        return f"{self.url}/track/{client}/{account}/{self.brand}/v1/{action}"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False
