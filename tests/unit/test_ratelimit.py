"""The process-wide limiter: paces requests to the configured rate, keeps a
burst reserve, halves on 429 and recovers gradually."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import IntileryConfig
from bridge.intilery.ratelimit import JITTER_S, RateLimiter, saved_up
from bridge.intilery.redislimit import RedisRateLimiter, rate_limiter
from bridge.metrics import Metrics


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


def test_replicas_sharing_the_partitions_together_stay_under_the_account() -> None:
    """Three replicas holding 2, 2 and 2 of 6 partitions: each a third of rate and burst;
    their send times merged never empty a bucket of the account's size."""
    merged: list[float] = []
    for _ in range(3):
        clock = Clock()
        limiter = RateLimiter(100, 500, clock=clock, sleep=clock.sleep)
        limiter.share(2 / 6)
        assert limiter.limit == pytest.approx(100 / 3)
        merged += send_times(limiter, clock, 1000)
    tokens, last = 500.0, 0.0
    for at in sorted(merged):
        tokens = min(500.0, tokens + (at - last) * 100)
        last = at
        assert tokens >= 1, "the account's bucket would answer 429"
        tokens -= 1
    # the three together use the account's rate once past the burst
    steady = sorted(merged)[1500:]
    assert (len(steady) - 1) / (steady[-1] - steady[0]) == pytest.approx(100, rel=0.02)


def test_a_share_keeps_a_back_off_and_none_keeps_the_last_share() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 500, clock=clock, sleep=clock.sleep)
    limiter.throttled()  # 429: half the limit
    limiter.share(0.5)
    assert (limiter.limit, limiter.rate) == (50, 25)
    assert limiter.capacity == pytest.approx(500 * 0.5 * 0.9)
    limiter.share(0)  # no partitions left: nothing to send, the last share stands
    assert limiter.limit == 50
    limiter.share(1)
    assert (limiter.limit, limiter.rate) == (100, 50)


def test_a_replica_sharing_the_account_starts_without_a_burst() -> None:
    """Others may have spent the account's burst already: it starts at the steady rate."""
    clock = Clock()
    limiter = RateLimiter(100, 500, clock=clock, sleep=clock.sleep, full=False)
    times = send_times(limiter, clock, 100)
    assert times[0] == pytest.approx(0.01) and times[-1] == pytest.approx(1.0)


def intilery(**rate_limit: object) -> IntileryConfig:
    return IntileryConfig.model_validate(
        {
            "url": "http://127.0.0.1:9",
            "client_id": "a",
            "account_id": "a",
            "auth_token": "t",
            "rate_limit": rate_limit,
        }
    )


@pytest.mark.parametrize(
    ("own", "redis", "kind", "per_second"),
    [
        (None, False, RateLimiter, 100),  # the live bridge: the account's rate (shared by partitions)
        (10.0, False, RateLimiter, 10),  # replay --rate 10
        (0.0, False, None, None),  # replay --rate 0: no limit at all
        (None, True, RedisRateLimiter, 100),
        (10.0, True, RedisRateLimiter, 10),  # Redis paces it; 10/s only while Redis is away
        (0.0, True, RedisRateLimiter, 100),  # no limit of its own, but still the account's bucket
    ],
)
def test_which_bucket_paces_a_process(
    own: float | None, redis: bool, kind: type | None, per_second: float | None
) -> None:
    config = intilery(
        per_second=100, burst=500, **({"redis": {"url": "redis://127.0.0.1:9"}} if redis else {})
    )
    limiter = rate_limiter(config, own, shared=own is None, metrics=Metrics())
    assert (type(limiter) if limiter is not None else None) is kind
    if limiter is not None:
        assert limiter.limit == per_second


@pytest.mark.parametrize(("own", "paced"), [(None, False), (0.0, False), (5.0, True)])
def test_an_account_without_a_limit_paces_only_what_asks(own: float | None, paced: bool) -> None:
    """``rate_limit.per_second: 0`` (no account limit): only ``--rate N`` paces a process."""
    limiter = rate_limiter(intilery(per_second=0), own, shared=own is None, metrics=Metrics())
    assert (limiter is not None and limiter.limit == own) if paced else limiter is None


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([(100, 500), (40, 20), (5, 50), (1000, 100)]),
    st.lists(st.floats(0, 1), min_size=400, max_size=400),
)
def test_requests_sent_on_time_and_delayed_within_the_reserve_stay_in_the_bucket(
    account: tuple[int, int], jitter: list[float]
) -> None:
    """Each request reaches Intilery up to the reserve's length late (bunching with those
    after it): a bucket of the account's size still has a token for every one."""
    per_second, burst = account
    clock = Clock()
    limiter = RateLimiter(per_second, burst, clock=clock, sleep=clock.sleep)
    tolerance_s = (burst - saved_up(burst, per_second)) / per_second
    assert tolerance_s >= min(JITTER_S, burst / 2 / per_second) - 1e-9
    sent = send_times(limiter, clock, len(jitter))
    arrivals = sorted(at + late * tolerance_s for at, late in zip(sent, jitter, strict=True))
    tokens, last = float(burst), 0.0
    for at in arrivals:
        tokens = min(float(burst), tokens + (at - last) * per_second)
        last = at
        assert tokens >= 1 - 1e-9
        tokens -= 1
