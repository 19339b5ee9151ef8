"""The process-wide limiter: paces requests to the configured rate, keeps a
burst reserve, halves on 429 and recovers gradually."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bridge.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def send_times(limiter: RateLimiter, clock: Clock, count: int) -> list[float]:
    """Issue requests one after another; record when each is allowed out."""
    times = []

    async def run() -> None:
        for _ in range(count):
            await limiter.acquire()
            times.append(clock.now)

    asyncio.run(run())
    return times


def test_burst_then_steady_rate_with_reserve() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 500, clock=clock, sleep=clock.sleep)
    times = send_times(limiter, clock, 1450)
    assert times[449] == 0.0 and times[450] > 0  # 90% of the burst at once
    steady = times[450:]
    assert steady[-1] - steady[0] == pytest.approx((len(steady) - 1) / 100)
    assert limiter.waited_s == pytest.approx(sum(t2 - t1 for t1, t2 in itertools.pairwise(times)))


def test_never_faster_than_a_bucket_of_the_same_size() -> None:
    """Replay the send times against Intilery's bucket (rate 100, burst 500): never empty."""
    clock = Clock()
    limiter = RateLimiter(100, 500, clock=clock, sleep=clock.sleep)
    tokens, last = 500.0, 0.0
    for at in send_times(limiter, clock, 3000):
        tokens = min(500.0, tokens + (at - last) * 100)
        last = at
        assert tokens >= 1 + 49, "the reserve absorbs up to 0.49 s of jitter"
        tokens -= 1


def test_concurrent_callers_are_spaced() -> None:
    """Callers arriving together each reserve the next slot (the clock stands still here)."""

    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    limiter = RateLimiter(10, 1, clock=lambda: 0.0, sleep=no_sleep)
    waits: list[float] = []

    async def run() -> None:
        waits.extend(await asyncio.gather(*(limiter.acquire() for _ in range(5))))

    asyncio.run(run())
    assert sorted(waits) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_429_halves_then_recovers() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 10, clock=clock, sleep=clock.sleep)
    limiter.throttled()
    assert limiter.rate == 50
    limiter.throttled()
    assert limiter.rate == 25
    clock.now += 5  # recovers a tenth of the limit per second
    send_times(limiter, clock, 1)
    assert limiter.rate == 75
    clock.now += 10
    send_times(limiter, clock, 1)
    assert limiter.rate == 100
    for _ in range(20):
        limiter.throttled()
    assert limiter.rate == 5  # never below 5% of the limit
