"""The ledger of commands sent once keeps the same promises in Redis (a real one, shared
by two clients as by two replicas) and in memory: a key is reserved by one holder, passed
by that holder again, confirmed as sent (a duplicate to any other holder, with the first
eventId), released only by its holder and only while pending, and a reservation whose
owner died ends with its bound. A Redis that does not answer is said, never guessed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from bridge.intilery.redislimit import connect
from bridge.model import Once
from bridge.safety.caps import CapCounts, MemoryCaps, RedisCaps, cap_key
from bridge.safety.ledger import (
    Claim,
    Ledger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    Reservation,
)
from tests.redisserver import RedisServer

KEY = Once.of("abandoned-sms", "C-1001", "B-77", 3600).key
A, B = "g:bookings:0:5", "g:bookings:1:9"  # two records: the event, and a producer's copy of it


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def both(redis_url: str) -> AsyncIterator[tuple[Ledger, Ledger]]:
    """Two clients of one Redis, as two replicas have."""
    first = RedisLedger(connect(redis_url, None, None), "intilery-bridge")
    second = RedisLedger(connect(redis_url, None, None), "intilery-bridge")
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def in_each(redis_server: RedisServer, scenario: Callable[[Ledger, Ledger], Any]) -> None:
    """``scenario`` over two Redis clients, then over one ledger in memory (seen twice)."""

    async def over_redis() -> None:
        async for first, second in both(redis_server.url):
            await scenario(first, second)

    asyncio.run(over_redis())
    memory = MemoryLedger()
    asyncio.run(scenario(memory, memory))


def test_reserved_once_passed_by_its_holder_a_duplicate_once_confirmed(redis_server: RedisServer) -> None:
    async def scenario(first: Ledger, second: Ledger) -> None:
        key = Once.of("abandoned-sms", "C-1001", f"B-{id(first)}", 3600).key
        assert await first.reserve(key, A, 60) == Reservation(Claim.RESERVED)
        assert await first.reserve(key, A, 60) == Reservation(Claim.RESERVED)  # a retry: its own
        assert await second.reserve(key, B, 60) == Reservation(Claim.PENDING, A)
        await first.confirm(key, A, "E-1", 3600)
        assert await second.reserve(key, B, 60) == Reservation(Claim.SENT, A, "E-1")
        assert await second.reserve(key, A, 60) == Reservation(Claim.RESERVED)  # the record again
        await second.release(key, B)  # not its holder's: changes nothing
        await second.release(key, A)  # confirmed: never released
        assert await second.reserve(key, B, 60) == Reservation(Claim.SENT, A, "E-1")

    in_each(redis_server, scenario)


def test_released_while_pending_the_next_record_may_send(redis_server: RedisServer) -> None:
    """A command dead-lettered releases its key, so a redrive (or the copy) can send it."""

    async def scenario(first: Ledger, second: Ledger) -> None:
        key = Once.of("abandoned-sms", "C-1002", f"B-{id(first)}", 3600).key
        await first.reserve(key, A, 60)
        await second.release(key, B)
        assert (await second.reserve(key, B, 60)).claim is Claim.PENDING
        await first.release(key, A)
        assert await second.reserve(key, B, 60) == Reservation(Claim.RESERVED)

    in_each(redis_server, scenario)


def test_a_dead_owners_reservation_ends_with_its_bound_a_confirmation_with_its_window(
    redis_server: RedisServer,
) -> None:
    async def over_redis() -> None:
        async for first, second in both(redis_server.url):
            await first.reserve(KEY, A, 0.05)
            # Redis expires the reservation on its own clock: the next record waits until then.
            await until_reserved(second, KEY, B)
            await second.confirm(KEY, B, "E-2", 0.05)
            await until_reserved(first, KEY, A + "-later")
        with redis.Redis.from_url(redis_server.url) as client:
            ttl = client.pttl(f"intilery-bridge:once:{KEY}")
        assert 0 < ttl <= 50, "a reservation expires with its bound"

    asyncio.run(over_redis())

    clock = Clock()
    memory = MemoryLedger(clock=clock)

    async def in_memory() -> None:
        await memory.reserve(KEY, A, 30)
        clock.now += 29
        assert (await memory.reserve(KEY, B, 30)).claim is Claim.PENDING
        clock.now += 1
        assert (await memory.reserve(KEY, B, 30)).claim is Claim.RESERVED
        await memory.confirm(KEY, B, "E-3", 3600)
        clock.now += 3599
        assert (await memory.reserve(KEY, A, 30)).claim is Claim.SENT
        clock.now += 1
        assert (await memory.reserve(KEY, A, 30)).claim is Claim.RESERVED

    asyncio.run(in_memory())


async def until_reserved(ledger: Ledger, key: str, holder: str) -> None:
    """Asked again until Redis, on its own clock, has expired what held the key."""
    found: list[Reservation] = []

    async def reserved() -> bool:
        found.append(await ledger.reserve(key, holder, 0.05))
        return found[-1].claim is Claim.RESERVED

    for _ in range(500):
        if await reserved():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still {found[-1]} after {len(found)} asks")


def test_memory_is_bounded_the_nearest_end_goes_first() -> None:
    evicted: list[int] = []
    clock = Clock()
    memory = MemoryLedger(max_entries=3, clock=clock, on_evicted=lambda: evicted.append(1))

    async def scenario() -> None:
        for n, window in enumerate((100, 10, 200, 300)):
            await memory.confirm(f"k{n}", A, f"E-{n}", window)
        assert len(memory) == 3 and evicted == [1]
        assert (await memory.reserve("k1", B, 30)).claim is Claim.RESERVED  # the one nearest its end
        assert (await memory.reserve("k0", B, 30)).claim is Claim.SENT

    asyncio.run(scenario())


def test_a_redis_that_does_not_answer_is_said_never_guessed(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async for first, _ in both(redis_server.url):
            await first.reserve(KEY, A, 60)
            redis_server.stop()
            with pytest.raises(LedgerUnavailable):
                await first.reserve(KEY, B, 60)
            with pytest.raises(LedgerUnavailable):
                await first.confirm(KEY, A, "E-4", 60)
            redis_server.start()
            assert (await first.reserve(KEY, B, 60)).claim is Claim.RESERVED  # a new Redis: empty

    asyncio.run(scenario())


def test_caps_count_places_over_a_sliding_window_in_redis_and_in_memory(redis_server: RedisServer) -> None:
    """Three places in the window: a fourth holder refused, a holder already counted
    passes, a place given back frees one; in Redis two clients share the count."""

    async def scenario(first: CapCounts, second: CapCounts, key: str) -> None:
        assert [await first.take(key, f"h{n}", 3, 3600) for n in range(3)] == [True] * 3
        assert not await second.take(key, "h3", 3, 3600)
        assert await second.take(key, "h1", 3, 3600)  # its own place: passes
        await first.give_back(key, "h0")
        assert await second.take(key, "h3", 3, 3600)
        assert not await first.take(key, "h4", 3, 3600)

    async def over_redis() -> None:
        clients = [connect(redis_server.url, None, None) for _ in range(2)]
        first, second = (RedisCaps(client, "intilery-bridge") for client in clients)
        await scenario(first, second, cap_key("marketing", "C-1001"))
        for client in clients:
            await client.aclose()

    asyncio.run(over_redis())
    memory = MemoryCaps()
    asyncio.run(scenario(memory, memory, cap_key("marketing", "C-1001")))


def test_a_place_leaves_the_count_when_the_window_passes_it() -> None:
    clock = Clock()
    caps = MemoryCaps(clock=clock)

    async def scenario() -> None:
        assert await caps.take("k", "h0", 1, 60)
        clock.now += 59
        assert not await caps.take("k", "h1", 1, 60)
        clock.now += 1
        assert await caps.take("k", "h1", 1, 60)

    asyncio.run(scenario())


def test_the_steps_of_concurrent_commands_go_to_redis_together_and_meet_as_in_turn(
    redis_server: RedisServer,
) -> None:
    """Two hundred commands reserving at once cost Redis a call or two, not two hundred;
    within one call the steps run in order: of two records reserving one key, one holds
    it and the other finds it pending, and five takes of a cap of three give three."""

    def script_calls() -> int:
        with redis.Redis.from_url(redis_server.url) as client:
            stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))

    async def scenario() -> None:
        client = connect(redis_server.url, None, None)
        ledger, counts = RedisLedger(client, "together"), RedisCaps(client, "together")
        await ledger.reserve("warm-up", A, 60)  # the script loaded once
        before = script_calls()
        keys = [f"k{n}" for n in range(200)]
        found = await asyncio.gather(*(ledger.reserve(key, A, 60) for key in keys))
        assert {f.claim for f in found} == {Claim.RESERVED}
        assert script_calls() - before <= 2
        both_ways = await asyncio.gather(ledger.reserve("one", A, 60), ledger.reserve("one", B, 60))
        assert both_ways == [Reservation(Claim.RESERVED), Reservation(Claim.PENDING, A)]
        key = cap_key("marketing", "C-1003")
        taken = await asyncio.gather(*(counts.take(key, f"h{n}", 3, 3600) for n in range(5)))
        assert taken == [True, True, True, False, False]
        await asyncio.gather(*(ledger.confirm(key, A, f"E-{key}", 60) for key in keys))
        again = await asyncio.gather(*(ledger.reserve(key, B, 60) for key in keys))
        assert [f.event_id for f in again] == [f"E-{key}" for key in keys]
        await ledger.close()

    asyncio.run(scenario())
