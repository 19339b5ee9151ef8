"""A rule's command sent once per customer and dedupe key within its window, whatever the
producers repeat (``rules[].dedupe``), over a :mod:`~bridge.safety.ledger`.

Before a command with a dedupe key is sent, its key is reserved for the record (its
*holder*: the group and the record's position); a key another record's command was
accepted under is a duplicate; a key another record holds, pending, is waited for until
that record's outcome is known (or its reservation ends: its owner died). While the
command is being sent (retries included) the reservation is renewed; once Intilery
accepts it, it is confirmed for the window; dead-lettered or withheld, it is released.

A ledger that does not answer is never guessed at: the command waits, asking again,
and ``on_state(False)`` says so (the gauge, readiness) until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

from bridge.model import Once
from bridge.safety.ledger import Claim, Ledger, Reservation
from bridge.safety.state import State

PENDING_WAIT_S = (0.05, 1.0)  # another record's reservation: asked again, backing off to 1 s


class Dedupe:
    """The record path's side of the ledger; a record's holder is its group and position
    (:func:`~bridge.safety.ledger.holder_of`)."""

    def __init__(
        self,
        ledger: Ledger,
        reservation_s: float,
        on_state: Callable[[bool], None] = lambda up: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        state: State | None = None,
    ) -> None:
        """``state``: how the state is asked (shared with the caps), else one of its own."""
        self.ledger = ledger
        self._reservation_s = reservation_s
        self._sleep = sleep
        self.state = state or State(on_state, sleep)
        self._held: dict[tuple[str, str], int] = {}  # (key, holder): the blocks renewing it
        self._renewing: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.state.up

    @property
    def fresh_s(self) -> float:
        """How long a reservation asked early stays good to use without asking again: until
        the renewal would have renewed it."""
        return self._reservation_s / 3

    def reserving(self, once: Once, holder: str) -> asyncio.Future[Reservation]:
        """The key reserved now for a record just read; its lane gives the answer to :meth:`claim`."""
        return self.ledger.reserving(once.key, holder, self._reservation_s)

    async def claim(
        self, once: Once, holder: str, early: asyncio.Future[Reservation] | None = None
    ) -> Reservation:
        """RESERVED (send it) or SENT (a duplicate: not to be sent), once another holder's
        pending reservation has an outcome. ``early``: :meth:`reserving`'s, used when it was
        answered."""
        delay = PENDING_WAIT_S[0]
        answered = await self.state.answered([early]) if early is not None else None
        found = answered[0] if answered is not None else None
        while True:
            if found is None:
                found = await self.state.ask(
                    partial(self.ledger.reserve, once.key, holder, self._reservation_s)
                )
            if found.claim is not Claim.PENDING:
                return found
            await self._sleep(delay)
            delay = min(delay * 2, PENDING_WAIT_S[1])
            found = None

    async def confirm(self, once: Once, holder: str, event_id: str | None) -> None:
        await self.state.ask(lambda: self.ledger.confirm(once.key, holder, event_id or "", once.window_s))

    async def release(self, once: Once, holder: str) -> None:
        await self.state.ask(lambda: self.ledger.release(once.key, holder))

    @contextlib.contextmanager
    def renewing(self, once: Once, holder: str) -> Iterator[None]:
        """The reservation renewed every third of its bound while the block runs (a live
        owner's retries outlast the bound; a dead owner's reservation ends with it): one
        task renews every reservation held, together."""
        held = (once.key, holder)
        self._held[held] = self._held.get(held, 0) + 1
        if self._renewing is None:
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        try:
            yield
        finally:
            if self._held[held] == 1:
                del self._held[held]
            else:
                self._held[held] -= 1

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._reservation_s / 3)
            renewals = [self.ledger.reserving(key, holder, self._reservation_s) for key, holder in self._held]
            # Not answering: the next renewal tries again (a third of the bound later).
            await asyncio.gather(*renewals, return_exceptions=True)

    async def close(self) -> None:
        """The renewals stop (the bridge is stopping: the reservations left end with their bound)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
