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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import structlog

from bridge.model import Once, Record
from bridge.safety.ledger import Claim, Ledger, LedgerUnavailable, Reservation, holder_of

log = structlog.get_logger("bridge.safety")

T = TypeVar("T")

PENDING_WAIT_S = (0.05, 1.0)  # another record's reservation: asked again, backing off to 1 s
UNAVAILABLE_WAIT_S = (0.2, 5.0)  # the ledger not answering: asked again, backing off to 5 s


class Dedupe:
    """The record path's side of the ledger for the consumer group ``group``."""

    def __init__(
        self,
        ledger: Ledger,
        group: str,
        reservation_s: float,
        on_state: Callable[[bool], None] = lambda up: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.ledger = ledger
        self._group = group
        self._reservation_s = reservation_s
        self._on_state = on_state
        self._sleep = sleep
        self.up = True

    def holder(self, record: Record) -> str:
        """Who reserves for ``record``: the same record read again (by this group) passes."""
        return holder_of(self._group, record.topic, record.partition, record.offset)

    async def claim(self, once: Once, holder: str) -> Reservation:
        """RESERVED (send it) or SENT (a duplicate: not to be sent), once another holder's
        pending reservation has an outcome."""
        delay = PENDING_WAIT_S[0]
        while True:
            found = await self._answered(lambda: self.ledger.reserve(once.key, holder, self._reservation_s))
            if found.claim is not Claim.PENDING:
                return found
            await self._sleep(delay)
            delay = min(delay * 2, PENDING_WAIT_S[1])

    async def confirm(self, once: Once, holder: str, event_id: str | None) -> None:
        await self._answered(lambda: self.ledger.confirm(once.key, holder, event_id or "", once.window_s))

    async def release(self, once: Once, holder: str) -> None:
        await self._answered(lambda: self.ledger.release(once.key, holder))

    @contextlib.asynccontextmanager
    async def renewing(self, once: Once, holder: str) -> AsyncIterator[None]:
        """The reservation renewed every third of its bound while the block runs (a live
        owner's retries outlast the bound; a dead owner's reservation ends with it)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._reservation_s / 3)
                with contextlib.suppress(LedgerUnavailable):  # the next renewal tries again
                    await self.ledger.reserve(once.key, holder, self._reservation_s)

        task = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            task.cancel()

    async def _answered(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = UNAVAILABLE_WAIT_S[0]
        while True:
            try:
                answer = await call()
            except LedgerUnavailable as exc:
                self._went_down(str(exc))
                await self._sleep(delay)
                delay = min(delay * 2, UNAVAILABLE_WAIT_S[1])
                continue
            self._came_back()
            return answer

    def _went_down(self, reason: str) -> None:
        if self.up:
            self.up = False
            self._on_state(False)
            log.warning("dedupe_state_unavailable", reason=reason)

    def _came_back(self) -> None:
        if not self.up:
            self.up = True
            self._on_state(True)
            log.info("dedupe_state_restored")
