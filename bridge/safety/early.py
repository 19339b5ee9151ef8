"""A record's customer-safety steps asked when it is read, answered by the time its lane
reaches it: the round trips to the state overlap the record's wait in its lane instead of
adding to it.

When a record is mapped, each of its guarded commands has its dedupe key reserved and its
places in the caps taken at once, for the record (its holder). The lane, reaching the
command, takes those answers (:meth:`EarlySteps.reservation`, :meth:`EarlySteps.places`)
instead of asking again, unless they are older than ``fresh_s`` (a reservation about to
end, a place its window has passed) or were not answered: then it asks again, as it does
for a record mapped in its lane. Asking twice changes nothing: a holder's own
reservation and its own place pass. Steps a record never used (it was rejected, or the
audit topic shows a command sent before) are let go (:meth:`EarlySteps.let_go`); a
record dropped unsent (its partition revoked, the bridge stopping) keeps them until its
next reading, by the same holder, uses them, or until their bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.model import Command
from bridge.safety.caps import Caps
from bridge.safety.dedupe import Dedupe
from bridge.safety.ledger import Reservation


@dataclass(slots=True)
class Asked:
    """A command's steps asked early: its key's reservation, its places in its caps."""

    command: Command
    reservation: asyncio.Future[Reservation] | None
    places: list[asyncio.Future[bool]] | None


class EarlySteps:
    """By rule, the steps asked for a record's commands when it was read."""

    def __init__(
        self,
        dedupe: Dedupe | None,
        caps: Caps | None,
        holder: str,
        commands: list[Command],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dedupe = dedupe
        self._caps = caps
        self._holder = holder
        self._clock = clock
        self._asked_at = clock()
        self._fresh_s = dedupe.fresh_s if dedupe is not None else float("inf")
        self._asked: dict[str, Asked] = {}
        for command in commands:
            self._ask(command)

    def __bool__(self) -> bool:
        return bool(self._asked)

    def _ask(self, command: Command) -> None:
        once = command.once if self._dedupe is not None else None
        caps = self._caps.applying(command) if self._caps is not None else []
        if once is None and not caps:
            return
        reservation = self._dedupe.reserving(once, self._holder) if self._dedupe and once else None
        places = self._caps.taking(command, self._holder, caps) if self._caps and caps else None
        if caps:
            self._fresh_s = min(self._fresh_s, *(cap.window_s / 3 for cap in caps))
        self._asked[command.rule] = Asked(command, reservation, places)

    def _fresh(self) -> bool:
        return self._clock() - self._asked_at < self._fresh_s

    def reservation(self, command: Command) -> asyncio.Future[Reservation] | None:
        """The command's key's reservation asked early, while it is fresh; None: ask again."""
        asked = self._asked.get(command.rule)
        if asked is None or not self._fresh():
            return None
        reservation, asked.reservation = asked.reservation, None
        return reservation

    def places(self, command: Command) -> list[asyncio.Future[bool]] | None:
        """The command's places in its caps asked early, while fresh; None: ask again."""
        asked = self._asked.get(command.rule)
        if asked is None or not self._fresh():
            return None
        places, asked.places = asked.places, None
        return places

    async def let_go(self, command: Command | None = None) -> None:
        """The steps asked for ``command`` (None: for every command) and not used: its key
        released, its places given back, so that no other record waits for them."""
        rules = [command.rule] if command is not None else list(self._asked)
        for rule in rules:
            asked = self._asked.pop(rule, None)
            if asked is None:
                continue
            if asked.reservation is not None and self._dedupe is not None and asked.command.once:
                await self._dedupe.release(asked.command.once, self._holder)
            if asked.places is not None and self._caps is not None:
                caps = self._caps.applying(asked.command)
                await self._caps.give_back(asked.command, self._holder, caps)
