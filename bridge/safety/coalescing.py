"""Many callers' steps sent to the state as one call: round trips per batch, not per command.

Every lane asks the state for its own command (reserve a key, take a cap's place,
confirm), but concurrent lanes ask in the same turn of the event loop. A
:class:`Coalescer` gathers the steps asked while its previous call is out, sends them as
one (a Lua script over many keys), and answers each caller with its own part. With one
call out at a time a step waits at most one round trip more, and the busier the bridge
the larger the batches: the step's cost follows the requests, not the commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Step = TypeVar("Step")
Answer = TypeVar("Answer")

MOST_STEPS = 1000  # per call: a Lua script holds Redis while it runs, so each stays short


class Coalescer(Generic[Step, Answer]):
    """``send``: the steps' answers, in their order, in one call (or its exception, which
    every step of that call receives)."""

    def __init__(
        self, send: Callable[[list[Step]], Awaitable[Sequence[Answer]]], most: int = MOST_STEPS
    ) -> None:
        self._send = send
        self._most = most
        self._waiting: list[tuple[Step, asyncio.Future[Answer]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def ask(self, step: Step) -> Answer:
        """The step's answer, sent with the others asked meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((step, future))
        if self._sending is None:
            self._sending = loop.create_task(self._send_waiting())
        return await future

    async def _send_waiting(self) -> None:
        """Started on the first step asked; it gathers the steps asked in the same turn
        (the task runs on the loop's next), then those asked while each call was out."""
        try:
            while self._waiting:
                batch = self._waiting[: self._most]
                del self._waiting[: self._most]
                await self._answer(batch)
        finally:
            self._sending = None

    async def _answer(self, batch: list[tuple[Step, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._send([step for step, _ in batch])
        except asyncio.CancelledError:  # the loop is closing: no caller is left answerless
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():  # a caller cancelled meanwhile is not answered
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
