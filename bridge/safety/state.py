"""Asking the customer-safety state (the dedupe ledger, the caps' counts) patiently: a
state that does not answer is never guessed at. The caller waits, asking again (backing
off to 5 s); ``on_state(False)`` says so once (the gauge, readiness, a log line) and
``on_state(True)`` when it answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from bridge.safety.ledger import LedgerUnavailable

log = structlog.get_logger("bridge.safety")

T = TypeVar("T")

UNAVAILABLE_WAIT_S = (0.2, 5.0)  # not answering: asked again, backing off to 5 s


class State:
    def __init__(
        self,
        on_state: Callable[[bool], None] = lambda up: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._on_state = on_state
        self._sleep = sleep
        self.up = True

    async def ask(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call``'s answer, asked again while the state does not answer."""
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

    async def answered(self, early: list[asyncio.Future[T]]) -> list[T] | None:
        """The answers of steps asked early (for a record when it was read); None when one
        of them was not answered: the caller asks again, patiently."""
        try:
            return [await future for future in early]
        except LedgerUnavailable:
            return None

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
