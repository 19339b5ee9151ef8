"""One Intilery account's rate limit shared exactly through Redis.

Every replica, ``replay`` and ``redrive`` of the account draws from one GCRA bucket
(generic cell rate algorithm) kept in Redis under one key per Intilery account and
brand. An atomic Lua script reserves each request's slot on Redis' own clock, so
the processes' clocks never matter; a ``Retry-After`` one of them is given holds
back all of them (stored beside the bucket). When Redis does not answer, the
process falls back at once to its local bucket (its share of the partitions,
:class:`~bridge.intilery.ratelimit.RateLimiter`), logs it once per episode, and tries Redis
again every few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from bridge.config import IntileryConfig
from bridge.intilery.ratelimit import Limiter, RateLimiter, saved_up
from bridge.metrics import Metrics

log = structlog.get_logger("bridge.intilery.ratelimit")

RETRY_REDIS_S = 5.0  # after Redis failed, the local bucket serves this long before Redis is asked again
TIMEOUT_S = 0.5  # a Redis call slower than this counts as Redis not answering

# KEYS: the bucket's theoretical arrival time (µs, Redis clock), the hold-until time.
# ARGV: µs between requests at the account's rate, the tolerance (µs: a burst's worth).
# Gives the µs this request waits for its slot.
RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tat - tolerance, now, hold)
local next_tat = math.max(tat, slot) + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return slot - now
"""

# KEYS: the hold-until time. ARGV: µs to hold from now. Keeps the later of two holds.
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > held then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""


class RedisRateLimiter:
    """The account's bucket in Redis; ``local`` serves while Redis does not answer.

    Offers what :class:`~bridge.intilery.ratelimit.RateLimiter` does (``acquire``, ``throttled``,
    ``share``, ``limit``, ``rate``, ``capacity``), so the client and the bridge use either.
    """

    def __init__(
        self,
        client: Any,
        key: str,
        per_second: float,
        burst: int,
        local: RateLimiter,
        on_state: Callable[[bool], None] = lambda up: None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``sleep`` waits for a slot, ``clock`` times the fallback (both for tests: the
        slots themselves are on Redis' clock)."""
        self._redis = client
        self._keys = [f"{key}:tat", f"{key}:hold"]
        self._interval_us = 1_000_000 / per_second
        self._tolerance_us = self._interval_us * saved_up(burst, per_second)
        self.local = local
        self._reserve = client.register_script(RESERVE_SLOT)
        self._hold = client.register_script(HOLD)
        self._on_state = on_state
        self._sleep = sleep
        self._clock = clock
        self.up = True
        self._retry_at = 0.0
        self._holding: set[asyncio.Task[None]] = set()

    # What the bridge reads and sets: the local bucket's (its share, for the fallback).
    @property
    def limit(self) -> float:
        return self.local.limit

    @property
    def rate(self) -> float:
        return self.local.rate

    @property
    def capacity(self) -> float:
        return self.local.capacity

    def share(self, fraction: float) -> None:
        self.local.share(fraction)

    async def acquire(self) -> float:
        """Wait for this request's slot in the account's bucket; gives the seconds waited."""
        if not self.up and self._clock() < self._retry_at:
            return await self.local.acquire()
        try:
            waited_us = await asyncio.wait_for(
                self._reserve(keys=self._keys, args=[self._interval_us, self._tolerance_us]), TIMEOUT_S
            )
        except (TimeoutError, RedisError, OSError) as exc:
            self._down(exc)
            return await self.local.acquire()
        self._restored()
        wait = max(0.0, int(waited_us) / 1_000_000)
        if wait:
            await self._sleep(wait)
        return wait

    def throttled(self, retry_after: float | None = None) -> None:
        """Intilery answered 429: the local bucket backs off; a ``Retry-After`` holds back
        every process of the account (stored in Redis)."""
        self.local.throttled()
        if retry_after and self.up:
            task = asyncio.get_running_loop().create_task(self._hold_all(retry_after))
            self._holding.add(task)  # kept until done: the loop holds tasks only weakly
            task.add_done_callback(self._holding.discard)

    async def _hold_all(self, seconds: float) -> None:
        try:
            hold = self._hold(keys=self._keys[1:], args=[round(seconds * 1_000_000)])
            await asyncio.wait_for(hold, TIMEOUT_S)
        except (TimeoutError, RedisError, OSError) as exc:
            self._down(exc)

    def _down(self, exc: BaseException) -> None:
        self._retry_at = self._clock() + RETRY_REDIS_S
        if self.up:
            self.up = False
            self._on_state(False)
            log.warning(
                "rate_limit_redis_unavailable",
                error=type(exc).__name__,
                fallback_per_second=round(self.local.limit, 2),
                retry_in_s=RETRY_REDIS_S,
            )

    def _restored(self) -> None:
        if not self.up:
            self.up = True
            self._on_state(True)
            log.info("rate_limit_redis_restored")

    async def close(self) -> None:
        await self._redis.aclose()


def connect(url: str, password: str | None, ca_file: str | None) -> Any:
    """A redis-py asyncio client; ``rediss://`` URLs use TLS (``ca_file`` to trust)."""
    options: dict[str, Any] = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    if password:
        options["password"] = password
    if ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = ca_file
    return aioredis.from_url(url, **options)


def rate_limiter(
    intilery: IntileryConfig, own: float | None, shared: bool, metrics: Metrics
) -> Limiter | None:
    """The local bucket: the account's rate (``shared`` by partitions) or ``own``; with
    Redis, the account's bucket there, the local one serving while Redis is away."""
    account = intilery.rate_limit
    redis = account.redis if account.per_second > 0 else None  # the account's bucket, when it has a rate
    # ``own`` 0: no limit of its own; with Redis the account's bucket still paces it.
    per_second = own or account.per_second
    if per_second <= 0 or (own == 0 and redis is None):
        return None
    burst = max(1, min(account.burst, round(own))) if own else account.burst
    local = RateLimiter(per_second, burst, full=not shared)
    if redis is None:
        return local
    password = redis.password.get_secret_value() if redis.password else None
    metrics.redis_up.set(1)
    return RedisRateLimiter(
        connect(redis.url, password, redis.ca_file),
        f"{redis.key_prefix}:{intilery.account_id}:{intilery.brand_id or '-'}",
        account.per_second,
        account.burst,
        local,
        on_state=lambda up: metrics.redis_up.set(1 if up else 0),
    )
