"""Retry classification, Retry-After, backoff, and the Sender's retry loop."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import RetryConfig
from bridge.errors import AuthError, DeliveryError, RecordError, RejectedError, RetryableError, SetupError
from bridge.intilery.client import Delivered, classify, parse_retry_after
from bridge.intilery.sending import Backoff, Gate, Sender
from bridge.model import Command
from bridge.tracing import Span

COMMAND = Command(rule="r", action="track", body={"event": "x", "userId": "u"}, payload=b"{}")


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507])
def test_retryable_statuses(status: int) -> None:
    with pytest.raises(RetryableError) as info:
        classify(response(status))
    assert info.value.status == status


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses(status: int) -> None:
    with pytest.raises(AuthError):
        classify(response(status, {"success": False, "message": "no token supplied"}))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_a_setup_error_naming_where_without_credentials(status: int) -> None:
    moved = {"location": "https://bob:Passw0rd@tracking.example.com/track/a/b/C/v1/track"}
    with pytest.raises(SetupError) as info:
        classify(response(status, headers=moved))
    assert not isinstance(info.value, AuthError | RecordError)
    assert info.value.reason.startswith(f"Intilery redirects ({status}) to https://")
    assert "Passw0rd" not in info.value.reason and "tracking.example.com/track" in info.value.reason


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    with pytest.raises(RejectedError) as info:
        classify(response(status, {"success": False, "message": "userId must not be empty"}))
    assert info.value.status == status and "userId must not be empty" in info.value.reason
    assert info.value.error_class == "rejected"


def test_success_gives_event_id() -> None:
    delivered = classify(response(200, {"success": True, "eventId": "e-1"}), 12.5)
    assert (delivered.status, delivered.event_id, delivered.latency_ms) == (200, "e-1", 12.5)


def test_2xx_with_success_false_is_rejected() -> None:
    with pytest.raises(RejectedError):
        classify(response(200, {"success": False, "message": "nope"}))


def test_retry_after_header() -> None:
    with pytest.raises(RetryableError) as info:
        classify(response(429, headers={"Retry-After": "3"}))
    assert info.value.retry_after == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_capped_and_jittered() -> None:
    config = RetryConfig(initial_backoff_ms=100, max_backoff_ms=1000)
    assert Backoff(config, rand=lambda: 1.0).delay(1) == pytest.approx(0.1)
    assert Backoff(config, rand=lambda: 0.0).delay(2) == pytest.approx(0.1)
    assert Backoff(config, rand=lambda: 1.0).delay(50) == pytest.approx(1.0)


class Script:
    """A post function answering from a list of outcomes; records sleeps."""

    def __init__(self, outcomes: list[DeliveryError | RejectedError | None]) -> None:
        self.outcomes = outcomes
        self.calls = 0
        self.sleeps: list[float] = []
        self.now = 0.0

    async def post(self, command: Command, span: Span | None = None) -> Delivered:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return Delivered(200, "e", 1.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds

    def sender(self, **retry: int) -> tuple[Sender, list[int]]:
        retries: list[int] = []
        gate = Gate(clock=lambda: self.now)
        config = RetryConfig(initial_backoff_ms=100, max_backoff_ms=1000, auth_backoff_ms=5000, **retry)
        sender = Sender(
            self.post,
            config,
            4,
            lambda c, attempt, e, d, ctx: retries.append(attempt),
            gate=gate,
            backoff=Backoff(config, rand=lambda: 1.0),
            sleep=self.sleep,
        )
        return sender, retries


def test_retries_until_success_with_growing_backoff() -> None:
    script = Script([RetryableError("503", status=503), RetryableError("timeout"), None])
    sender, retries = script.sender()
    delivered = asyncio.run(sender.send(COMMAND))
    assert delivered.attempt == 3 and retries == [1, 2]
    assert script.sleeps == [0.1, 0.2]


def test_retry_after_holds_the_gate_for_every_request() -> None:
    script = Script([RetryableError("429", status=429, retry_after=7), None])
    sender, _ = script.sender()
    asyncio.run(sender.send(COMMAND))
    assert script.now >= 7 and sender.gate.open_at == 7


def test_retry_after_zero_still_backs_off() -> None:
    script = Script([RetryableError("429", status=429, retry_after=0), None])
    sender, _ = script.sender()
    asyncio.run(sender.send(COMMAND))
    assert script.sleeps == [0.1]


def test_auth_failure_never_gives_up_and_flags_the_gate() -> None:
    script = Script([AuthError("403", status=403)] * 5 + [None])
    sender, retries = script.sender(max_attempts=2)
    states: list[bool] = []
    original = script.sleep

    async def sleep(seconds: float) -> None:
        states.append(sender.gate.auth_failed)
        await original(seconds)

    sender._sleep = sleep
    delivered = asyncio.run(sender.send(COMMAND))
    assert delivered.attempt == 6 and all(states) and sender.gate.auth_failed is False
    assert 5.0 in script.sleeps and retries == [1, 2, 3, 4, 5]


def test_max_attempts_turns_into_rejection() -> None:
    script = Script([RetryableError("503", status=503)] * 3)
    sender, _ = script.sender(max_attempts=3)
    with pytest.raises(RejectedError, match="gave up after 3 attempts") as info:
        asyncio.run(sender.send(COMMAND))
    assert info.value.status == 503 and script.calls == 3


def test_rejection_is_not_retried() -> None:
    script = Script([RejectedError("400", status=400)])
    sender, retries = script.sender()
    with pytest.raises(RejectedError):
        asyncio.run(sender.send(COMMAND))
    assert script.calls == 1 and retries == []


def test_in_flight_never_exceeds_the_limit() -> None:
    peak = 0
    current = 0

    async def post(command: Command, span: Span | None = None) -> Delivered:
        nonlocal peak, current
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.001)
        current -= 1
        return Delivered(200, "e", 1.0)

    async def main() -> None:
        sender = Sender(post, RetryConfig(), 3, lambda *a: None)
        await asyncio.gather(*(sender.send(COMMAND) for _ in range(20)))

    asyncio.run(main())
    assert peak == 3


def test_stale_command_is_not_sent_and_guard_can_be_off() -> None:
    from dataclasses import replace

    from bridge.model import Withheld

    old = replace(COMMAND, event_ms=0, max_age_s=3600)
    script = Script([None])
    sender, _ = script.sender()
    assert asyncio.run(sender.send(old)) == Withheld("stale", "older than 1h (max_age)")
    assert script.calls == 0
    sender.guard_stale = False
    assert asyncio.run(sender.send(old)).status == 200


def test_command_staleness() -> None:
    from dataclasses import replace

    assert not COMMAND.is_stale(10**13)  # no max_age: never stale
    fresh = replace(COMMAND, event_ms=1_000_000, max_age_s=60)
    assert not fresh.is_stale(1_000_000 + 60_000) and fresh.is_stale(1_000_000 + 60_001)


def test_while_credentials_are_refused_one_request_at_a_time_probes_them() -> None:
    """Twenty commands wait; Intilery refuses the first six requests. The refusals
    come one at a time after the first round, not one per waiting command."""
    refusals = 6
    concurrent = peak = calls = 0

    async def post(command: Command, span: Span | None = None) -> Delivered:
        nonlocal concurrent, peak, calls
        calls += 1
        concurrent += 1
        if 4 < calls <= refusals + 1:  # after the first round (4 slots), up to the accepted probe
            peak = max(peak, concurrent)
        await asyncio.sleep(0.002)
        concurrent -= 1
        if calls <= refusals:
            raise AuthError("403", status=403)
        return Delivered(200, "e", 1.0)

    async def main() -> Sender:
        config = RetryConfig(auth_backoff_ms=5)
        sender = Sender(post, config, 4, lambda *a: None)
        await asyncio.gather(*(sender.send(COMMAND) for _ in range(20)))
        return sender

    sender = asyncio.run(main())
    assert peak == 1 and sender.gate.auth_failed is False
    assert calls == 20 + refusals


def test_requests_held_by_the_limiter_do_not_go_out_after_a_refusal() -> None:
    """32 commands, a limiter letting one request through every 2 ms: the first five
    requests are refused (403). Those still waiting for a token when a refusal came back
    are not sent on: each request after a refusal is a probe, sent once the refusal's
    back-off (5 ms) has passed, until one is accepted."""
    refusals: list[float] = []
    gaps: list[float] = []  # from the latest refusal to each request sent while refused
    calls = 0

    async def post(command: Command, span: Span | None = None) -> Delivered:
        nonlocal calls
        calls += 1
        now = asyncio.get_running_loop().time()
        if refusals and calls <= 6:
            gaps.append(now - refusals[-1])
        await asyncio.sleep(0.001)
        if calls <= 5:
            refusals.append(asyncio.get_running_loop().time())
            raise AuthError("403", status=403)
        return Delivered(200, "e", 1.0)

    turn = asyncio.Lock()

    async def pace() -> None:
        async with turn:
            await asyncio.sleep(0.002)

    async def main() -> None:
        sender = Sender(post, RetryConfig(auth_backoff_ms=5), 32, lambda *a: None, pace=pace)
        await asyncio.gather(*(sender.send(COMMAND) for _ in range(32)))

    asyncio.run(main())
    assert len(gaps) == 5 and min(gaps) >= 0.005, gaps
    assert calls == 32 + 5  # five refused (the first, then four probes), then each once


def test_an_error_is_never_changed_once_raised() -> None:
    """The record path named the rule by setting it on the error it caught; a batch then
    had to copy each error, since every sender annotated the one it got."""
    error = RejectedError("400: userId must not be empty", status=400)
    with pytest.raises(AttributeError, match="fixed once raised"):
        error.rule = "abandoned-sms"
    named = error.for_rule("abandoned-sms")
    assert type(named) is RejectedError and error.rule is None
    assert (named.rule, named.reason, named.status) == ("abandoned-sms", error.reason, 400)


@given(
    status=st.integers(100, 599),
    body=st.binary(max_size=300),
    location=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    retry_after=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_any_answer_is_classified_never_raised_raw(
    status: int, body: bytes, location: str, retry_after: str
) -> None:
    """Intilery's answer is outside bytes: whatever the status, body and headers (a
    redirect's Location, a Retry-After), it is delivered, retried, held or rejected."""
    answer = httpx.Response(status, content=body, headers={"location": location, "retry-after": retry_after})
    try:
        delivered = classify(answer)
    except (DeliveryError, RecordError) as exc:
        assert isinstance(exc.reason, str)
        if isinstance(exc, SetupError) and not isinstance(exc, AuthError):
            assert 300 <= status < 400 and len(exc.reason) < 300
    else:
        assert 200 <= status < 300 and delivered.status == status
