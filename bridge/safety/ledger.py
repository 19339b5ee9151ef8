"""The ledger of commands sent once: a key per rule, customer and rendered dedupe key,
reserved before a command is sent, confirmed when Intilery accepts it, released when
it is dead-lettered (so a redrive may send it) or when the reservation outlives its
bound (its owner died).

A reservation names its *holder*: the consumer group and the record's position, so
the same record read again (a retry, a resend after a crash or a rebalance) passes its
own reservation, and even its own confirmation: those resends stay governed by the
offset map and the audit look-up. Another record (a producer's duplicate, a replay's
group) meeting a confirmed key is a duplicate; meeting a reservation still pending, it
waits for its outcome.

Two ledgers keep the same promises: :class:`RedisLedger` (shared by every replica,
``replay`` and ``redrive``: one atomic Lua script per step, over the keys of every
command asking at once, each key expiring with its window) and :class:`MemoryLedger`
(this process only, bounded). Neither guesses: a ledger that cannot answer raises
:class:`LedgerUnavailable`, and the caller waits.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from redis.exceptions import RedisError

from bridge.safety.coalescing import Coalescer, settled

TIMEOUT_S = 0.5  # a Redis call slower than this counts as Redis not answering


class Claim(StrEnum):
    """What reserving a key found."""

    RESERVED = "reserved"  # this holder may send: the key was free, or its own
    SENT = "sent"  # another holder's command was accepted within the window: a duplicate
    PENDING = "pending"  # another holder's reservation, its outcome not known yet


@dataclass(frozen=True, slots=True)
class Reservation:
    claim: Claim
    holder: str | None = None  # the other holder (SENT, PENDING)
    event_id: str | None = None  # Intilery's eventId of the command accepted (SENT), when known


RESERVED = Reservation(Claim.RESERVED)


def holder_of(group: str, topic: str, partition: int, offset: int) -> str:
    """Who reserves for a record: the group reading it and its position."""
    return f"{group}|{topic}|{partition}|{offset}"


class LedgerUnavailable(Exception):
    """The ledger did not answer: nothing may be guessed, the caller waits and asks again."""


class Ledger(Protocol):
    def reserving(self, key: str, holder: str, hold_s: float) -> asyncio.Future[Reservation]:
        """The key reserved now, its answer awaited later (asked early for a record just read)."""
        ...

    async def reserve(self, key: str, holder: str, hold_s: float) -> Reservation: ...

    async def confirm(self, key: str, holder: str, event_id: str, window_s: float) -> None: ...

    async def release(self, key: str, holder: str) -> None: ...


# Each script takes many entries, one per key, their arguments a JSON array in ARGV[1]
# (one array per entry: one argument to encode, not four per command), and answers a
# JSON array, one answer per entry. The entries run in order, so two holders reserving
# one key in the same call meet as they would in two. An entry is a hash: s = P
# pending or S sent, h = holder, e = eventId.

# Per entry: the holder, the reservation's bound (ms). Answers [claim, holder, eventId].
RESERVE = """
local entries, out = cjson.decode(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local holder, bound = entries[i][1], entries[i][2]
  local found = redis.call('HMGET', key, 's', 'h', 'e')
  if not found[1] then
    redis.call('HSET', key, 's', 'P', 'h', holder)
    redis.call('PEXPIRE', key, bound)
    out[i] = {'reserved', '', ''}
  elseif found[2] == holder then
    if found[1] == 'P' then redis.call('PEXPIRE', key, bound) end
    out[i] = {'reserved', '', ''}
  elseif found[1] == 'S' then
    out[i] = {'sent', found[2], found[3] or ''}
  else
    out[i] = {'pending', found[2], ''}
  end
end
return cjson.encode(out)
"""

# Per entry: the holder, the eventId, the window (ms): kept that long from now.
CONFIRM = """
local entries = cjson.decode(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 's', 'S', 'h', entries[i][1], 'e', entries[i][2])
  redis.call('PEXPIRE', key, entries[i][3])
end
return cjson.encode(#KEYS)
"""

# Per entry: the holder. Only its own reservation, never a confirmation.
RELEASE = """
local entries = cjson.decode(ARGV[1])
for i, key in ipairs(KEYS) do
  local found = redis.call('HMGET', key, 's', 'h')
  if found[1] == 'P' and found[2] == entries[i][1] then redis.call('DEL', key) end
end
return cjson.encode(#KEYS)
"""


class RedisScript(Coalescer[tuple[str, tuple[Any, ...]], Any]):
    """A script over many entries (see above), its calls coalesced: each step a key and its
    arguments, answered with ``answer`` of the script's answer for it (None when the
    script answers the number of entries it took)."""

    def __init__(self, client: Any, source: str, answer: Callable[[Any], Any] = lambda raw: raw) -> None:
        super().__init__(self._run)
        self._script = client.register_script(source)
        self._answer_of = answer

    async def _run(self, entries: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        keys = [key for key, _ in entries]
        args = json.dumps([each for _, each in entries])
        try:
            reply = await asyncio.wait_for(self._script(keys=keys, args=[args]), TIMEOUT_S)
        except (TimeoutError, RedisError, OSError) as exc:
            raise LedgerUnavailable(f"Redis: {type(exc).__name__}") from exc
        answers = json.loads(reply)
        if isinstance(answers, int):
            return [None] * len(entries)
        return [self._answer_of(answer) for answer in answers]


def reservation_of(answer: list[str]) -> Reservation:
    claim, other, event_id = answer
    found = Claim(claim)
    if found is Claim.RESERVED:
        return RESERVED
    return Reservation(found, other or None, event_id or None)


class RedisLedger:
    """The ledger in Redis, under ``<key_prefix>:once:<key>``; the steps of concurrent
    commands sent together (:mod:`~bridge.safety.coalescing`)."""

    def __init__(self, client: Any, key_prefix: str) -> None:
        self._redis = client
        self._prefix = f"{key_prefix}:once:"
        self._reserve = RedisScript(client, RESERVE, reservation_of)
        self._confirm = RedisScript(client, CONFIRM)
        self._release = RedisScript(client, RELEASE)

    def reserving(self, key: str, holder: str, hold_s: float) -> asyncio.Future[Reservation]:
        return self._reserve.submit((self._prefix + key, (holder, ms(hold_s))))

    async def reserve(self, key: str, holder: str, hold_s: float) -> Reservation:
        return await self.reserving(key, holder, hold_s)

    async def confirm(self, key: str, holder: str, event_id: str, window_s: float) -> None:
        await self._confirm.ask((self._prefix + key, (holder, event_id, ms(window_s))))

    async def release(self, key: str, holder: str) -> None:
        await self._release.ask((self._prefix + key, (holder,)))

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(slots=True)
class Entry:
    sent: bool
    holder: str
    event_id: str | None
    expires_at: float


class MemoryLedger:
    """The ledger in this process: valid for one replica. At most ``max_entries`` keys; past
    that the entries nearest their end go first (each eviction counted)."""

    def __init__(
        self,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
        on_evicted: Callable[[], None] = lambda: None,
    ) -> None:
        self._entries: dict[str, Entry] = {}
        self._ends: list[tuple[float, str]] = []  # (expires_at, key), a heap; stale ones skipped
        self._max = max_entries
        self._clock = clock
        self._on_evicted = on_evicted

    def __len__(self) -> int:
        return len(self._entries)

    def reserving(self, key: str, holder: str, hold_s: float) -> asyncio.Future[Reservation]:
        return settled(self.reserved(key, holder, hold_s))

    async def reserve(self, key: str, holder: str, hold_s: float) -> Reservation:
        return self.reserved(key, holder, hold_s)

    def reserved(self, key: str, holder: str, hold_s: float) -> Reservation:
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is None:
            self._put(key, Entry(False, holder, None, now + hold_s))
            return RESERVED
        if entry.holder == holder:
            if not entry.sent:
                self._put(key, Entry(False, holder, None, now + hold_s))
            return RESERVED
        if entry.sent:
            return Reservation(Claim.SENT, entry.holder, entry.event_id)
        return Reservation(Claim.PENDING, entry.holder)

    async def confirm(self, key: str, holder: str, event_id: str, window_s: float) -> None:
        self.seed(key, holder, event_id, window_s)

    def seed(self, key: str, holder: str, event_id: str, window_s: float) -> None:
        """A command accepted ``window_s`` before its window ends (confirm, or the rebuild at
        start-up from the audit topic)."""
        self._put(key, Entry(True, holder, event_id or None, self._clock() + window_s))

    async def release(self, key: str, holder: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.holder == holder and not entry.sent:
            del self._entries[key]

    def _put(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry
        heapq.heappush(self._ends, (entry.expires_at, key))
        while len(self._entries) > self._max:
            self._pop_earliest(evicted=True)
        if len(self._ends) > 2 * len(self._entries) + 1024:  # ends of entries replaced since
            self._ends = [(e.expires_at, k) for k, e in self._entries.items()]
            heapq.heapify(self._ends)

    def _expire(self, now: float) -> None:
        while self._ends and self._ends[0][0] <= now:
            self._pop_earliest(evicted=False)

    def _pop_earliest(self, evicted: bool) -> None:
        expires_at, key = heapq.heappop(self._ends)
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at == expires_at:  # not replaced since
            del self._entries[key]
            if evicted:
                self._on_evicted()


def ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
