"""The account's rate limit shared through a real Redis (Debian's redis-server, started
here on a free loopback port): two processes' limiters drawing from one bucket stay
under the account's limit together, a Retry-After one of them is given holds back
the other, and with Redis gone each falls back to its local bucket at once and
returns to Redis when it answers again."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.devtools.kafkanode import free_port
from bridge.intilery.ratelimit import RateLimiter
from bridge.intilery.redislimit import RedisRateLimiter, connect
from tests.support import wait_for


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not found: install Debian's redis-server package (.ci/run does)"
        self.binary, self.port = binary, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        no_disk = ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *no_disk],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 10, "redis-server to answer PING")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def limiter(url: str, per_second: float, burst: int, states: list[bool] | None = None) -> RedisRateLimiter:
    local = RateLimiter(per_second, burst)
    return RedisRateLimiter(
        connect(url, None, None),
        "intilery-bridge:acme:ACME",
        per_second,
        burst,
        local,
        on_state=(states.append if states is not None else lambda up: None),
    )


def test_two_processes_share_one_bucket(redis_server: RedisServer) -> None:
    """120 requests from two limiters at 100/s, burst 10: together never faster than one
    bucket of the account's size allows (a small allowance for the timing of this test)."""
    times: list[float] = []

    async def run() -> None:
        first, second = limiter(redis_server.url, 100, 10), limiter(redis_server.url, 100, 10)

        async def send(one: RedisRateLimiter, count: int) -> None:
            for _ in range(count):
                await one.acquire()
                times.append(time.monotonic())

        await asyncio.gather(send(first, 60), send(second, 60))
        await first.close()
        await second.close()

    asyncio.run(run())
    times.sort()
    span = times[-1] - times[0]
    # 5 at once (of a burst of 10, half kept back: a quarter second at 100/s is more), then
    # 100/s: the other 115 need 1.15 s
    assert span >= 1.15 * 0.95, f"120 requests in {span:.2f} s"
    for start in range(0, len(times), 10):
        window = [t for t in times if times[start] <= t < times[start] + 0.5]
        assert len(window) <= 9 + 50 + 2, "more than a burst and half a second's worth in 0.5 s"


def test_a_retry_after_holds_back_every_process(redis_server: RedisServer) -> None:
    async def run() -> float:
        first, second = limiter(redis_server.url, 1000, 100), limiter(redis_server.url, 1000, 100)
        await first.acquire()
        first.throttled(retry_after=0.6)
        await asyncio.sleep(0.05)  # the hold reaches Redis
        started = time.monotonic()
        await second.acquire()
        waited = time.monotonic() - started
        await first.close()
        await second.close()
        return waited

    assert asyncio.run(run()) >= 0.5


def test_redis_gone_falls_back_at_once_and_comes_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.intilery.redislimit.RETRY_REDIS_S", 0.3)
    states: list[bool] = []

    async def run() -> list[Any]:
        one = limiter(redis_server.url, 1000, 100, states)
        await one.acquire()
        assert one.up
        redis_server.stop()
        started = time.monotonic()
        with capture_logs() as logs:
            for _ in range(20):  # served by the local bucket, one warning for the episode
                await one.acquire()
            assert time.monotonic() - started < 2, "no request waits for a dead Redis"
            assert not one.up
            redis_server.start()
            await asyncio.sleep(0.4)
            await one.acquire()
        assert one.up
        await one.close()
        return logs

    logs = asyncio.run(run())
    events = [entry["event"] for entry in logs]
    assert events.count("rate_limit_redis_unavailable") == 1
    assert events.count("rate_limit_redis_restored") == 1
    assert states == [False, True]
