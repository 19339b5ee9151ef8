"""Steps asked together go to the state in one call: those asked in one turn of the loop
together, those asked while a call is out in the next; each caller gets its own answer,
a call's failure reaches only its own steps, and a caller that gave up leaves the
others answered."""

from __future__ import annotations

import asyncio

import pytest

from bridge.safety.coalescing import Coalescer


class State:
    """Answers each step with its double, one call at a time, a little later."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail or set()

    async def send(self, steps: list[int]) -> list[int]:
        self.calls.append(steps)
        await asyncio.sleep(0.01)
        if self.fail & set(steps):
            raise ConnectionError("no answer")
        return [step * 2 for step in steps]


def test_steps_asked_together_go_in_one_call_each_answered_with_its_own() -> None:
    state = State()
    calls = Coalescer(state.send)

    async def scenario() -> None:
        first = [asyncio.ensure_future(calls.ask(n)) for n in range(50)]
        await asyncio.sleep(0.005)  # the first call is out: these wait for the next
        later = [asyncio.ensure_future(calls.ask(n)) for n in range(50, 80)]
        assert await asyncio.gather(*first, *later) == [n * 2 for n in range(80)]

    asyncio.run(scenario())
    assert state.calls == [list(range(50)), list(range(50, 80))]


def test_a_call_holds_at_most_its_bound() -> None:
    state = State()
    calls = Coalescer(state.send, most=20)

    async def scenario() -> None:
        assert await asyncio.gather(*(calls.ask(n) for n in range(45))) == [n * 2 for n in range(45)]

    asyncio.run(scenario())
    assert [len(call) for call in state.calls] == [20, 20, 5]


def test_a_failed_call_fails_its_own_steps_and_the_next_call_goes() -> None:
    state = State(fail={3})
    calls = Coalescer(state.send)

    async def scenario() -> None:
        failed = await asyncio.gather(*(calls.ask(n) for n in range(5)), return_exceptions=True)
        assert all(isinstance(answer, ConnectionError) for answer in failed)
        assert await calls.ask(7) == 14

    asyncio.run(scenario())
    assert state.calls == [list(range(5)), [7]]


def test_a_caller_that_gave_up_leaves_the_others_answered() -> None:
    state = State()
    calls = Coalescer(state.send)

    async def scenario() -> None:
        asks = [asyncio.ensure_future(calls.ask(n)) for n in range(3)]
        await asyncio.sleep(0)
        asks[1].cancel()
        assert await asks[0] == 0 and await asks[2] == 4
        with pytest.raises(asyncio.CancelledError):
            await asks[1]

    asyncio.run(scenario())
