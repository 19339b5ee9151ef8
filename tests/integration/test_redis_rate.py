"""The account's rate limit shared through a real Redis (Debian's redis-server, started
here on a free loopback port): two processes' limiters drawing from one bucket stay
under the account's limit together, a Retry-After one of them is given holds back
the other, and with Redis gone each falls back to its local bucket at once and
returns to Redis when it answers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from bridge.intilery.ratelimit import RateLimiter, saved_up
from bridge.intilery.redislimit import RETRY_REDIS_S, RedisRateLimiter, connect
from tests.redisserver import RedisServer
from tests.support import until

KEY = "intilery-bridge:acme:ACME"


def limiter(
    url: str,
    per_second: float,
    burst: int,
    states: list[bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RedisRateLimiter:
    """A limiter that never sleeps itself: each acquire gives the wait Redis assigned it
    (on Redis' clock), so the tests read the bucket's decisions, not this machine's speed."""
    local = RateLimiter(per_second, burst)
    return RedisRateLimiter(
        connect(url, None, None),
        KEY,
        per_second,
        burst,
        local,
        on_state=(states.append if states is not None else lambda up: None),
        sleep=lambda seconds: asyncio.sleep(0),
        clock=clock,
    )


def redis_now_us(url: str) -> int:
    """Redis' own clock, which the bucket's slots are on."""
    with redis.Redis.from_url(url) as client:
        seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def test_two_processes_share_one_bucket(redis_server: RedisServer) -> None:
    """120 requests from two limiters at 100/s, burst 10: the slots Redis gives them
    together are one bucket's, never faster than the account's rate allows after what
    the burst saves up."""
    waits: list[float] = []

    async def run() -> None:
        first, second = limiter(redis_server.url, 100, 10), limiter(redis_server.url, 100, 10)

        async def send(one: RedisRateLimiter, count: int) -> None:
            for _ in range(count):
                waits.append(await one.acquire())

        await asyncio.gather(send(first, 60), send(second, 60))
        await first.close()
        await second.close()

    before = redis_now_us(redis_server.url)
    asyncio.run(run())
    took_s = (redis_now_us(redis_server.url) - before) / 1_000_000
    interval, saved = 1 / 100, saved_up(10, 100) * (1 / 100)
    # The k-th slot given is at least k intervals after the first, less what the burst
    # saved up; each wait is its slot less the time it was asked (within ``took_s``).
    for k, wait in enumerate(sorted(waits)):
        assert wait >= k * interval - saved - took_s - 1e-6, f"slot {k}: waited {wait:.4f} s"
    assert max(waits) <= len(waits) * interval, "no request waits longer than the bucket asks"
    at_once = sum(1 for wait in waits if wait == 0)  # a burst's worth, and what the time taken earned
    assert at_once <= saved_up(10, 100) + 1 + took_s / interval, f"{at_once} at once"


def test_a_retry_after_holds_back_every_process(redis_server: RedisServer) -> None:
    """A Retry-After given to one process holds back the other, on Redis' clock."""

    async def run() -> tuple[float, int]:
        first, second = limiter(redis_server.url, 1000, 100), limiter(redis_server.url, 1000, 100)
        await first.acquire()
        first.throttled(retry_after=30)
        await until(lambda: hold_until(redis_server.url) is not None, 10, "the hold to reach Redis")
        waited = await second.acquire()
        asked_by = redis_now_us(redis_server.url)
        await first.close()
        await second.close()
        return waited, asked_by

    waited, asked_by = asyncio.run(run())
    held = hold_until(redis_server.url)
    assert held is not None and waited * 1_000_000 >= held - asked_by > 0, "waits the hold out"
    assert waited <= 30


def hold_until(url: str) -> int | None:
    with redis.Redis.from_url(url) as client:
        value = client.get(f"{KEY}:hold")
    return None if value is None else int(value)


def test_redis_gone_falls_back_at_once_and_comes_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis gone the first request is served by the local bucket (one warning for the
    episode, the next requests never asking Redis until the retry time), and once Redis
    answers again the next request after that time is Redis'."""
    states: list[bool] = []
    now = [0.0]

    async def run() -> list[Any]:
        one = limiter(redis_server.url, 1000, 100, states, clock=lambda: now[0])
        await one.acquire()
        assert one.up
        redis_server.stop()
        with capture_logs() as logs:
            await one.acquire()
            assert not one.up, "the first request after Redis went is the local bucket's"
            for _ in range(20):  # served by the local bucket, one warning for the episode
                await one.acquire()
            redis_server.start()
            await one.acquire()
            assert not one.up, "Redis is asked again only after the retry time"
            now[0] += RETRY_REDIS_S
            await one.acquire()
        assert one.up
        await one.close()
        return logs

    logs = asyncio.run(run())
    events = [entry["event"] for entry in logs]
    assert events.count("rate_limit_redis_unavailable") == 1
    assert events.count("rate_limit_redis_restored") == 1
    assert states == [False, True]
