"""Frequency caps' counts: per cap and customer, the commands taken over a sliding window.

A command under a cap *takes* a place before it is sent (so concurrent lanes and
replicas cannot pass the cap together) and *gives it back* when it is not sent after all
(dead-lettered, withheld). A place is named by its holder (the record and the rule), so
the same record read again finds its own place and passes. A place taken by an owner
that died before its command was sent stays counted until the window passes it: a cap
may then let fewer through, never more.

:class:`RedisCaps` keeps them in Redis (one sorted set per cap and customer, scored by
Redis' own clock, expiring with the window; one atomic Lua script per step, over the
places of every command asking at once), shared by every replica, ``replay`` and
``redrive``; :class:`MemoryCaps` in the process. Neither guesses: Redis not answering
raises :class:`~bridge.safety.ledger.LedgerUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from bridge.model import Command
from bridge.safety.coalescing import settled
from bridge.safety.ledger import RedisScript, ms
from bridge.safety.state import State


class CapCounts(Protocol):
    def taking(self, key: str, holder: str, limit: int, window_s: float) -> asyncio.Future[bool]:
        """A place taken now, its answer awaited later (asked early for a record just read)."""
        ...

    async def take(self, key: str, holder: str, limit: int, window_s: float) -> bool: ...

    async def give_back(self, key: str, holder: str) -> None: ...


def cap_key(cap: str, user_id: str) -> str:
    """A cap's count for a customer: the customer's id hashed (no customer data kept)."""
    return f"{cap}:{hashlib.sha256(user_id.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def flood_key(rule: str) -> str:
    """A rule's flood breaker's count: its commands, whoever they are for."""
    return f"flood:{hashlib.sha256(rule.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def place_of(holder: str, rule: str) -> str:
    """A command's place in a cap: its record and its rule."""
    return f"{holder}|{rule}"


# KEYS: the caps' sets (per cap and customer), one per entry, taken in order; the
# entries' arguments as the ledger's scripts take them (:class:`RedisScript`). Per
# entry: the holder, the cap's max, its window (ms). Answers per entry 1: a place (taken
# now, or the holder's already), 0: the cap is full.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries, out = cjson.decode(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local holder, most, window = entries[i][1], entries[i][2], entries[i][3]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  out[i] = 1
  if not redis.call('ZSCORE', key, holder) then
    if redis.call('ZCARD', key) >= most then
      out[i] = 0
    else
      redis.call('ZADD', key, now, holder)
      redis.call('PEXPIRE', key, window)
    end
  end
end
return cjson.encode(out)
"""

# Per entry: the holder whose place goes.
GIVE_BACK = """
local entries = cjson.decode(ARGV[1])
for i, key in ipairs(KEYS) do redis.call('ZREM', key, entries[i][1]) end
return cjson.encode(#KEYS)
"""


class RedisCaps:
    """The counts in Redis, under ``<key_prefix>:cap:<key>``; the steps of concurrent
    commands sent together (:mod:`~bridge.safety.coalescing`)."""

    def __init__(self, client: Any, key_prefix: str) -> None:
        self._prefix = f"{key_prefix}:cap:"
        self._take = RedisScript(client, TAKE, bool)
        self._give_back = RedisScript(client, GIVE_BACK)

    def taking(self, key: str, holder: str, limit: int, window_s: float) -> asyncio.Future[bool]:
        return self._take.submit((self._prefix + key, (holder, limit, ms(window_s))))

    async def take(self, key: str, holder: str, limit: int, window_s: float) -> bool:
        return bool(await self.taking(key, holder, limit, window_s))

    async def give_back(self, key: str, holder: str) -> None:
        await self._give_back.ask((self._prefix + key, (holder,)))


class MemoryCaps:
    """The counts in this process (valid for one replica)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._taken: dict[str, dict[str, float]] = {}
        self._clock = clock

    def taking(self, key: str, holder: str, limit: int, window_s: float) -> asyncio.Future[bool]:
        return settled(self.taken(key, holder, limit, window_s))

    async def take(self, key: str, holder: str, limit: int, window_s: float) -> bool:
        return self.taken(key, holder, limit, window_s)

    def taken(self, key: str, holder: str, limit: int, window_s: float) -> bool:
        now = self._clock()
        places = self._taken.setdefault(key, {})
        for old in [h for h, at in places.items() if at <= now - window_s]:
            del places[old]
        if holder in places:
            return True
        if len(places) >= limit:
            return False
        places[holder] = now
        return True

    def seed(self, key: str, holder: str, age_s: float) -> None:
        """A place taken ``age_s`` ago (the rebuild at start-up from the audit topic)."""
        self._taken.setdefault(key, {})[holder] = self._clock() - age_s

    async def give_back(self, key: str, holder: str) -> None:
        places = self._taken.get(key)
        if places is not None:
            places.pop(holder, None)
            if not places:
                del self._taken[key]


@dataclass(frozen=True, slots=True)
class Cap:
    """``delivery.caps[]``: at most ``max`` of ``commands`` per customer in ``window_s``."""

    name: str
    commands: frozenset[str]
    max: int
    window_s: float


class Caps:
    """The record path's side of the caps: a command takes a place in every cap that counts
    it before it is sent; the first cap full refuses it (the places taken for it given back)."""

    def __init__(self, counts: CapCounts, caps: list[Cap], state: State, shared: bool = True) -> None:
        """``shared``: the counts are the group's (Redis), so a rule's ``max_per_minute`` is
        the group's; else this replica's, and it takes its :meth:`share` of it."""
        self.counts = counts
        self._caps = caps
        self.state = state
        self.shared = shared
        self._share = 1.0

    def share(self, fraction: float) -> None:
        """Counted in this process: ``fraction`` (the share of the partitions this replica
        holds) of each rule's ``max_per_minute`` is this replica's, as the rate limit is
        shared. The caps per customer are not shared out: a customer's records are on one
        partition when keyed by customer."""
        if not self.shared:
            self._share = fraction

    def flood_max(self, per_minute: int) -> int:
        """This replica's part of a rule's ``max_per_minute`` (at least one)."""
        return per_minute if self.shared else max(1, math.ceil(per_minute * self._share))

    @property
    def up(self) -> bool:
        return self.state.up

    def applying(self, command: Command) -> list[Cap]:
        """The caps that count ``command`` (none for a rule with ``caps: false``)."""
        if command.uncapped:
            return []
        return self.counting(command.name)

    def counting(self, name: str) -> list[Cap]:
        """The caps that count a command named ``name`` (of a rule whose caps are on)."""
        return [cap for cap in self._caps if name in cap.commands]

    def taking(self, command: Command, holder: str, caps: list[Cap]) -> list[asyncio.Future[bool]]:
        """A place in each of ``caps`` taken now for a record just read; its lane gives the
        answers to :meth:`take`."""
        user = str(command.body.get("userId", ""))
        place = place_of(holder, command.rule)
        return [self.counts.taking(cap_key(cap.name, user), place, cap.max, cap.window_s) for cap in caps]

    async def take(
        self, command: Command, holder: str, caps: list[Cap], early: list[asyncio.Future[bool]] | None = None
    ) -> Cap | None:
        """None: a place in each of ``caps`` taken for the command; else the first cap full
        (the places taken for it given back). ``early``: the places :meth:`taking` asked
        for when the record was read, used when they were answered."""
        answers = await self.state.answered(early) if early is not None else None
        if answers is not None:
            placed = dict(zip((cap.name for cap in caps), answers, strict=True))
            full = next((cap for cap in caps if not placed[cap.name]), None)
            if full is not None:
                await self.give_back(command, holder, [cap for cap in caps if placed[cap.name]])
            return full
        user = str(command.body.get("userId", ""))
        place = place_of(holder, command.rule)
        taken: list[str] = []
        for cap in caps:
            key = cap_key(cap.name, user)
            if not await self.state.ask(partial(self.counts.take, key, place, cap.max, cap.window_s)):
                for earlier in taken:
                    await self.state.ask(partial(self.counts.give_back, earlier, place))
                return cap
            taken.append(key)
        return None

    async def within_flood(self, command: Command, holder: str) -> bool:
        """Whether the rule's flood breaker (``max_per_minute``) lets ``command`` through: a
        place in the rule's last 60 s taken for it, or False when they are all taken."""
        if command.max_per_minute is None:
            return True
        key, place = flood_key(command.rule), place_of(holder, command.rule)
        limit = self.flood_max(command.max_per_minute)
        return await self.state.ask(partial(self.counts.take, key, place, limit, 60.0))

    async def give_back_flood(self, command: Command, holder: str) -> None:
        if command.max_per_minute is not None:
            key, place = flood_key(command.rule), place_of(holder, command.rule)
            await self.state.ask(partial(self.counts.give_back, key, place))

    async def give_back(self, command: Command, holder: str, caps: list[Cap]) -> None:
        """The command was not sent after all (dead-lettered, withheld): its places go."""
        user = str(command.body.get("userId", ""))
        place = place_of(holder, command.rule)
        for cap in caps:
            await self.state.ask(partial(self.counts.give_back, cap_key(cap.name, user), place))
