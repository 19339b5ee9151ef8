"""Sending one command until Intilery takes it: retries with back-off, ``Retry-After``
honoured, the credentials probed one request at a time while refused, the stale-event
guard before every attempt, and ``max_in_flight`` (:class:`Sender`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bridge.config import RetryConfig
from bridge.errors import AuthError, DeliveryError, RejectedError, SetupError
from bridge.intilery.client import Delivered
from bridge.intilery.ratelimit import Pace
from bridge.model import Command, Withheld
from bridge.timestamps import duration_text
from bridge.tracing import Span

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when spans are exported
    from bridge.spans import Spans

CREDENTIALS_REFUSED = "Intilery refuses the credentials (401/403)"


class Gate:
    """Holds every request back until a moment: after a 429 or an auth failure.
    ``auth_failed``: Intilery refuses the setup (credentials, or a redirect); ``refusal``: how,
    as ``/readyz`` says it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.open_at = 0.0
        self.auth_failed = False
        self.refusal = CREDENTIALS_REFUSED
        self.probe = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        self.open_at = max(self.open_at, self._clock() + seconds)

    async def wait(self, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        while (delay := self.open_at - self._clock()) > 0:
            await sleep(delay)


class Backoff:
    """Capped exponential backoff; jitter picks between half and all of the step."""

    def __init__(self, config: RetryConfig, rand: Callable[[], float] = random.random) -> None:
        self._initial = config.initial_backoff_ms / 1000
        self._cap = config.max_backoff_ms / 1000
        self._rand = rand

    def delay(self, attempt: int) -> float:
        ceiling = min(self._cap, self._initial * 2.0 ** min(attempt - 1, 30))
        return ceiling * (0.5 + 0.5 * self._rand())


def withheld(command: Command, now_ms: int | None) -> Withheld | None:
    """Why ``command`` would not be sent at ``now_ms`` (None: whatever its age), if it would
    not: what ``run`` skips and the previews (``map``, ``test``, ``diff``, ``replay
    --dry-run``) say they skip."""
    if command.held:
        fields = ", ".join(command.missing)
        return Withheld("incomplete", f"fields absent from the event: {fields} (on_missing: skip)")
    if now_ms is not None and command.max_age_s is not None and command.is_stale(now_ms):
        return Withheld("stale", f"older than {duration_text(command.max_age_s)} (max_age)")
    return None


Post = Callable[[Command, Span | None], Awaitable[Delivered]]
OnRetry = Callable[[Command, int, DeliveryError, float, Mapping[str, Any]], None]


class Sender:
    """Sends one command until Intilery takes it, refuses it, or attempts run out.

    Before every attempt a command that is not to be sent (:func:`withheld`: past its
    rule's ``max_age``, unless ``guard_stale`` is off as for ``replay --ignore-max-age``;
    held back by its rule's ``on_missing: skip``) is returned as :class:`Withheld` instead.
    """

    def __init__(
        self,
        post: Post,
        retry: RetryConfig,
        max_in_flight: int,
        on_retry: OnRetry,
        gate: Gate | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        guard_stale: bool = True,
        pace: Pace | None = None,
        spans: Spans | None = None,
        children: bool = True,
    ) -> None:
        """``children``: each attempt is a span of its own, a child of its record's (False:
        ``post`` gets the record's span itself; in batch mode the batch request has one)."""
        self._post = post
        self._spans = spans
        self._children = children
        self._pace = pace
        self._retry = retry
        self._slots = asyncio.Semaphore(max_in_flight)
        self._on_retry = on_retry
        self.gate = gate or Gate()
        self._backoff = backoff or Backoff(retry)
        self._sleep = sleep
        self.guard_stale = guard_stale
        self.in_flight = 0
        self.failing_since: float | None = None  # since when every attempt has failed

    async def send(
        self, command: Command, context: Mapping[str, Any] = MappingProxyType({}), span: Span | None = None
    ) -> Delivered | Withheld:
        """Intilery's acceptance, or why the command is not to be sent (:func:`withheld`,
        checked before every attempt). ``context`` (where the command comes from) is passed
        to ``on_retry`` for its log line; ``span``: its record's, of which each request is a
        child."""
        attempt = 0
        while True:
            attempt += 1
            request = span.child() if span is not None and self._children else span
            try:
                delivered = await self._attempt(command, request)
                if isinstance(delivered, Withheld):
                    return delivered
            except RejectedError as exc:  # refused for good: the record's to dead-letter
                self._traced(request, command, attempt, exc.status, 0.0)
                raise
            except DeliveryError as exc:
                self._traced(request, command, attempt, exc.status, 0.0)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                delay = self._delay_after(exc, attempt)
                gives_up = self._retry.max_attempts and attempt >= self._retry.max_attempts
                if gives_up and not isinstance(exc, SetupError):
                    raise RejectedError(
                        f"gave up after {attempt} attempts: {exc.reason}", status=exc.status
                    ) from exc
                self._on_retry(command, attempt, exc, delay, context)
                await self._sleep(delay)
                continue
            self.gate.auth_failed = False
            self.failing_since = None
            self._traced(request, command, attempt, delivered.status, delivered.latency_ms)
            return Delivered(delivered.status, delivered.event_id, delivered.latency_ms, attempt)

    def _traced(
        self, request: Span | None, command: Command, attempt: int, status: int | None, ms: float
    ) -> None:
        """The attempt's span (with ``observability.tracing``); ``status`` None: no answer."""
        if self._spans is not None and request is not None:
            self._spans.request(request, command.rule, command.name, command.action, status, attempt, ms)

    async def _attempt(self, command: Command, span: Span | None) -> Delivered | Withheld:
        while True:
            await self.gate.wait(self._sleep)
            if self.gate.auth_failed:
                # While the credentials are refused, one request at a time probes them.
                async with self.gate.probe:
                    await self._admitted()
                    if self.gate.auth_failed:
                        return await self._post_now(command, span)
            async with self._slots:
                await self._admitted()
                # Else refused while this one waited for a slot or the limiter: it probes.
                if not self.gate.auth_failed:
                    return await self._post_now(command, span)

    async def _admitted(self) -> None:
        """The gate open and the limiter's token taken, then the gate open still (a token
        can take a while: a 429 or a 403 may come back meanwhile)."""
        await self.gate.wait(self._sleep)
        if self._pace is not None:
            await self._pace()
            await self.gate.wait(self._sleep)

    async def _post_now(self, command: Command, span: Span | None) -> Delivered | Withheld:
        if (skipped := withheld(command, int(time.time() * 1000) if self.guard_stale else None)) is not None:
            return skipped
        self.in_flight += 1
        try:
            return await self._post(command, span)
        finally:
            self.in_flight -= 1

    def _delay_after(self, exc: DeliveryError, attempt: int) -> float:
        if isinstance(exc, SetupError):
            self.gate.auth_failed = True
            auth = isinstance(exc, AuthError)
            self.gate.refusal = CREDENTIALS_REFUSED if auth else exc.reason
            delay = self._retry.auth_backoff_ms / 1000
            self.gate.hold(delay)
            return delay
        if exc.retry_after is not None:
            delay = max(exc.retry_after, self._retry.initial_backoff_ms / 1000)  # never a zero-wait loop
            self.gate.hold(delay)
            return delay
        return self._backoff.delay(attempt)
