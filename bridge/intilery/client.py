"""The Intilery client: one pooled httpx client, each answer classified (it does not retry:
:mod:`bridge.intilery.sending` does).

Takes a :class:`~bridge.model.Command`, gives a :class:`Delivered` once
Intilery answers 2xx. Raises :class:`~bridge.errors.RejectedError` for a
permanent refusal (other 4xx) after translating every httpx error once here:

- connection errors, timeouts, 408, 429 and 5xx → :class:`RetryableError`
  (with ``Retry-After`` when Intilery sends it);
- 401/403 → :class:`AuthError`: the credentials, not the record;
- 3xx → :class:`SetupError`: ``intilery.url`` is out of date (the token is never sent on to
  where a redirect points).

:class:`~bridge.intilery.sending.Sender` wraps the client with capped exponential
backoff with jitter, a process-wide gate that holds every request back after a 429
with ``Retry-After`` or an auth failure, and the in-flight limit.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from bridge.config import IntileryConfig
from bridge.errors import AuthError, RejectedError, RetryableError, SetupError
from bridge.intilery.ratelimit import Limiter, Pace
from bridge.logs import printable, redact
from bridge.metrics import Metrics
from bridge.model import Command
from bridge.tracing import Span

log = structlog.get_logger("bridge.intilery.client")

RETRYABLE_STATUS = frozenset({408, 429})
AUTH_STATUS = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int
    event_id: str | None
    latency_ms: float
    attempt: int = 1


def parse_retry_after(value: str | None, now: float | None = None, longest: float = math.inf) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), at most
    ``longest`` (``delivery.retry.max_backoff_ms``: one answer of ``315360000`` or ``inf``
    would hold every request for ever); None when it says nothing a number can (``nan``)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(longest, max(0.0, seconds))


MAX_EVENT_ID = 200  # characters of an eventId kept


def event_id_of(body: Any) -> str | None:
    """The ``eventId`` of an answer, as text that always encodes (a lone surrogate is valid
    JSON: written escaped, as are control characters), cut at :data:`MAX_EVENT_ID`; an id
    that is not a string is kept as its JSON text."""
    found = body.get("eventId") if isinstance(body, dict) else None
    if found is None:
        return None
    return printable(found if isinstance(found, str) else json.dumps(found))[:MAX_EVENT_ID]


def answer_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON (nested past the parser's depth too)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _message(response: httpx.Response) -> str:
    body = answer_body(response)
    if body is None:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]


def classify(
    response: httpx.Response, latency_ms: float = 0.0, longest_wait_s: float = math.inf
) -> Delivered:
    """Translate an answer: return on 2xx, raise the right error otherwise (a ``Retry-After``
    taken as at most ``longest_wait_s``)."""
    status = response.status_code
    if 200 <= status < 300:
        body = answer_body(response)
        if isinstance(body, dict) and body.get("success") is False:
            raise RejectedError(
                f"Intilery answered {status} with success false: {_message(response)}", status=status
            )
        return Delivered(status, event_id_of(body), latency_ms)
    if 300 <= status < 400:
        where = redact(response.headers.get("location", "?"))[:200]
        moved = f"Intilery redirects ({status}) to {where}: intilery.url is out of date"
        raise SetupError(moved, status=status)
    if status in AUTH_STATUS:
        raise AuthError(f"Intilery refused the credentials ({status}): {_message(response)}", status=status)
    if status in RETRYABLE_STATUS or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), longest=longest_wait_s)
        raise RetryableError(f"Intilery answered {status}", status=status, retry_after=retry_after)
    raise RejectedError(f"Intilery rejected the command ({status}): {_message(response)}", status=status)


class IntileryClient:
    """Posts commands with one pooled ``httpx.AsyncClient``. ``pace`` waits for the rate
    limiter before each request (in batch mode; otherwise the sender paces, so that a
    request held there sees an auth failure that came back meanwhile); ``limiter`` is told
    of every 429.

    The client rides on aiohttp's connection pool (``httpx-aiohttp``): httpx's own
    pool costs several times more CPU per request at this concurrency.
    """

    def __init__(
        self,
        config: IntileryConfig,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
        metrics: Metrics | None = None,
        pace: Pace | None = None,
        longest_wait_s: float = math.inf,
    ) -> None:
        # Parsed once: httpx would otherwise parse the URL string again on every request.
        self._urls = {action: httpx.URL(config.endpoint(action)) for action in ("track", "identify", "batch")}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            headers={
                "content-type": "application/json",
                "auth-token": config.auth_token.get_secret_value(),
                "user-agent": "intilery-bridge",
            },
            limits=limits,
            transport=transport or AiohttpTransport(limits=limits, verify=config.tls.context()),
        )
        if not config.tls.verify:
            log.warning("tls_verification_disabled", service="intilery", url=config.url)
        self.limiter = limiter
        self.pace = pace
        self.metrics = metrics
        self._base_timeout_s = config.timeout_s
        self._max_timeout_s = max(config.max_timeout_s, config.timeout_s)
        self.timeout_s = config.timeout_s
        self.longest_wait_s = longest_wait_s  # a Retry-After is honoured up to this

    async def post(self, command: Command, span: Span | None = None) -> Delivered:
        return await self.send(command.action, command.payload, span)

    async def send(self, action: str, payload: bytes, span: Span | None = None) -> Delivered:
        """One request; ``span``: the request's own, whose ``traceparent`` it carries."""
        if self.pace is not None:
            await self.pace()
        started = time.perf_counter()
        timeout = self.timeout_s
        try:
            # httpx's time-outs are per phase: an answer that never ends (a 100 Continue and
            # then nothing) held the request for ever. The whole exchange has a deadline too.
            async with asyncio.timeout(timeout + min(timeout, 5.0) + 1.0):
                response = await self._client.post(
                    self._urls[action],
                    content=payload,
                    timeout=_timeout(timeout),
                    headers=span.headers() if span is not None else None,
                )
        except httpx.RequestError as exc:
            self._observe("error", started)
            if _answer_overdue(exc):
                self._stretch(timeout)
            raise RetryableError(_transport_reason(exc)) from exc
        except aiohttp.ClientError as exc:  # an answer aiohttp cannot parse, not mapped by httpx
            self._observe("error", started)
            raise RetryableError(f"the answer could not be read: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            self._observe("error", started)
            self._stretch(timeout)  # it may have been taken: as an answer overdue
            raise RetryableError("timed out: no whole answer by the request's deadline") from exc
        self._observe(str(response.status_code), started)
        self._settle(time.perf_counter() - started)
        if response.status_code == 429 and self.limiter is not None:
            retry_after = parse_retry_after(response.headers.get("retry-after"), longest=self.longest_wait_s)
            self.limiter.throttled(retry_after)
        return classify(response, (time.perf_counter() - started) * 1000, self.longest_wait_s)

    def _stretch(self, expired_s: float) -> None:
        """A request timed out: Intilery may still have taken it, and a retry with the same
        timeout would likely be taken and time out again, a duplicate each time. So the
        following requests wait twice as long, up to ``max_timeout_s``."""
        stretched = min(self._max_timeout_s, max(self.timeout_s, 2 * expired_s))
        if stretched > self.timeout_s:
            log.warning("intilery_timeout_stretched", timeout_s=round(stretched, 3))
        self.timeout_s = stretched

    def _settle(self, latency_s: float) -> None:
        """An answer came: the timeout returns toward ``timeout_s`` as answers speed up
        (never below four times this one's latency)."""
        self.timeout_s = max(self._base_timeout_s, min(self.timeout_s, 4 * latency_s))

    def _observe(self, status: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.http(status).observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self._client.aclose()


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _answer_overdue(exc: httpx.RequestError) -> bool:
    """A request that may have reached Intilery timed out waiting for its answer; not a
    connection refused or never made (the aiohttp transport calls those ConnectTimeout too)."""
    timed_out = "Timeout" in type(exc.__cause__ or exc).__name__
    return isinstance(exc, httpx.TimeoutException) and timed_out and not isinstance(exc, httpx.ConnectTimeout)


def _transport_reason(exc: httpx.RequestError) -> str:
    """Name the failure by its root cause (the aiohttp transport maps its errors loosely)."""
    cause = type(exc.__cause__ or exc).__name__
    if isinstance(exc, httpx.TimeoutException) and "Timeout" in cause:
        return f"timed out: {cause}"
    if isinstance(exc, httpx.TransportError):
        return f"connection failed: {cause}"
    return f"request failed: {cause}"  # decoding errors, redirect loops: not the record's fault
