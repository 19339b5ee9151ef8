"""Many callers' steps sent to the state as one call: round trips per batch, not per command.

Every lane asks the state for its own command (reserve a key, take a cap's place,
confirm), but concurrent lanes ask in the same turn of the event loop. A
:class:`Coalescer` gathers the steps asked while its calls are out, sends them as
one (a Lua script over many keys), and answers each caller with its own part. With a
few calls out at a time a step waits about one round trip, and the busier the bridge
the larger the calls: the step's cost follows the requests, not the commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Step = TypeVar("Step")
Answer = TypeVar("Answer")

MOST_STEPS = 1000  # per call: a Lua script holds Redis while it runs, so each stays short
CALLS_OUT = 4  # at once: a step waits for a call's round, not for the calls before it


class Coalescer(Generic[Step, Answer]):
    """``send``: the steps' answers, in their order, in one call (or its exception, which
    every step of that call receives); at most ``calls_out`` calls out at once."""

    def __init__(
        self,
        send: Callable[[list[Step]], Awaitable[Sequence[Answer]]],
        most: int = MOST_STEPS,
        calls_out: int = CALLS_OUT,
    ) -> None:
        self._send = send
        self._most = most
        self._calls_out = calls_out
        self._waiting: list[tuple[Step, asyncio.Future[Answer]]] = []
        self._sending = 0  # calls out
        self._tasks: set[asyncio.Task[None]] = set()  # theirs (a task not referred to may be collected)

    async def ask(self, step: Step) -> Answer:
        """The step's answer, sent with the others asked meanwhile."""
        return await self.submit(step)

    def submit(self, step: Step) -> asyncio.Future[Answer]:
        """The step asked now, its answer to be awaited later (or never: then a failure is
        not reported)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((step, future))
        if self._sending < self._calls_out:
            self._sending += 1
            task = loop.create_task(self._send_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _send_waiting(self) -> None:
        """Started on a step asked while fewer calls are out than allowed; it gathers the
        steps asked in the same turn (the task runs on the loop's next), then those asked
        while each call was out."""
        try:
            while self._waiting:
                batch = self._waiting[: self._most]
                del self._waiting[: self._most]
                await self._answer(batch)
        finally:
            self._sending -= 1  # at once: a step asked from now on starts a call of its own

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
                    future.add_done_callback(retrieved)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


def settled(answer: Answer) -> asyncio.Future[Answer]:
    """A step answered at once (a state in this process), in the shape of one asked."""
    future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    future.set_result(answer)
    return future


def retrieved(future: asyncio.Future[Any]) -> None:
    """A failure nobody awaits (a step asked early for a record then dropped) is not an
    error to report: whoever needs the answer asks again."""
    if not future.cancelled():
        future.exception()
