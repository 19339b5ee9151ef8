"""The process-wide request rate limit: a token bucket that backs off on 429.

Takes one token per HTTP request to Intilery (a batch is one request). Keeps
the bridge under ``per_second`` with bursts up to ``burst``, holding part of the
burst in reserve (:func:`saved_up`) so that network jitter never lets requests
reach Intilery's own bucket faster than it refills. When Intilery answers 429
anyway (another client shares the account), :meth:`RateLimiter.throttled` halves
the rate; it then recovers by a tenth of the limit per second. Tokens are reserved, not
polled: each caller sleeps exactly until its turn.

The limit is the account's: replicas of one group each take their share of it
(:meth:`RateLimiter.share`, their share of the partitions), so that together they
stay under it whatever their number.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

RESERVE = 0.1  # of the burst, kept back to absorb jitter...
JITTER_S = 0.25  # ...and at least this long of requests at the rate (up to half the burst)
RECOVERY_PER_S = 0.1  # of the limit, regained each second after a 429
FLOOR = 0.05  # of the limit: the slowest a run of 429s can make it


def saved_up(burst: float, per_second: float) -> float:
    """The tokens the bridge may save of ``burst``; the rest is kept back: requests sent on
    time that arrive bunched (a stall of the network, or of either end, of ``D`` seconds)
    stay within Intilery's bucket while ``D * per_second`` is within the reserve."""
    reserve = min(max(burst * RESERVE, per_second * JITTER_S), burst / 2)
    return max(1.0, burst - reserve)


class Limiter(Protocol):
    """What paces requests to Intilery: this module's bucket, or the account's in Redis."""

    @property
    def limit(self) -> float: ...  # requests/s allowed: the share, before any back-off

    @property
    def rate(self) -> float: ...  # requests/s allowed now

    @property
    def capacity(self) -> float: ...  # the burst it may send at once

    async def acquire(self) -> float: ...

    def throttled(self, retry_after: float | None = None) -> None: ...

    def share(self, fraction: float) -> None: ...


class RateLimiter:
    def __init__(
        self,
        per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        full: bool = True,
    ) -> None:
        """``full``: start with the burst saved up; a replica sharing an account starts
        empty instead (the others may have spent the account's burst already)."""
        self._account = (per_second, burst)  # what the Intilery account allows in all
        self.fraction = 1.0
        self.limit = per_second
        self.rate = per_second
        self.capacity = saved_up(burst, per_second)
        self._tokens = self.capacity if full else 0.0
        self._clock, self._sleep = clock, sleep
        self._at = clock()
        self.waited_s = 0.0

    async def acquire(self) -> float:
        """Wait for this request's turn; gives the seconds waited."""
        now = self._clock()
        self._refill(now)
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        self.waited_s += wait
        await self._sleep(wait)
        return wait

    def share(self, fraction: float) -> None:
        """Take ``fraction`` of the account's rate and burst (this replica's share of the
        partitions); a back-off in progress keeps its proportion. 0 keeps the last share:
        a replica without partitions has nothing to send."""
        if fraction <= 0 or fraction == self.fraction:
            return
        self._refill(self._clock())
        per_second, burst = self._account
        backed_off = self.rate / self.limit
        self.fraction = fraction
        self.limit = per_second * fraction
        self.rate = self.limit * backed_off
        self.capacity = saved_up(burst * fraction, per_second * fraction)
        self._tokens = min(self._tokens, self.capacity)

    def throttled(self, retry_after: float | None = None) -> None:
        """Intilery answered 429: halve the rate and forget saved-up tokens (``Retry-After``
        is the sender's to honour, for the whole process)."""
        self._refill(self._clock())
        self.rate = max(self.limit * FLOOR, self.rate / 2)
        self._tokens = min(self._tokens, 0.0)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._at = now
        if self.rate < self.limit:
            self.rate = min(self.limit, self.rate + self.limit * RECOVERY_PER_S * elapsed)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)


Pace = Callable[[], Awaitable[None]]


def pacer(limiter: Limiter, waited: Callable[[float], None] | None = None) -> Pace:
    """Waits for the limiter's next token; ``waited`` is told how long (a metric)."""

    async def pace() -> None:
        seconds = await limiter.acquire()
        if seconds and waited is not None:
            waited(seconds)

    return pace
