"""Batch mode: many commands per request to ``/v1/batch``.

Takes commands one at a time (``await batcher.post(command)``, the same shape
as the client's ``post``) and gives each its own outcome. Commands wait at most
``linger_ms`` to share a request of at most ``max_calls`` calls and
``max_bytes`` bytes (every call is already under Intilery's 32 KB). A batch
Intilery refuses as a whole (400 or 413) is split in halves and retried until
the offending calls are isolated: only they get the rejection, the innocent are
delivered. Any other failure goes to every command of the batch, whose senders
retry it. Per-key order holds because a lane waits for its command's outcome
before it sends the next one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bridge.config import BatchConfig
from bridge.errors import DeliveryError, RejectedError
from bridge.intilery.client import Delivered, IntileryClient
from bridge.model import Command
from bridge.tracing import Span, new_trace

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when spans are exported
    from bridge.spans import Spans

_ENVELOPE_BYTES = len(b'{"batch":[]}')
Pending = tuple[Command, "asyncio.Future[Delivered]", Span | None]


def batch_payload(commands: list[Command]) -> bytes:
    return b'{"batch":[' + b",".join(c.payload for c in commands) + b"]}"


class Batcher:
    def __init__(
        self, client: IntileryClient, config: BatchConfig, max_requests: int, spans: Spans | None = None
    ) -> None:
        self._client, self._spans = client, spans
        self._config = config
        self._requests = asyncio.Semaphore(max_requests)
        self._pending: list[Pending] = []
        self._bytes = _ENVELOPE_BYTES
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.splits = 0

    async def post(self, command: Command, span: Span | None = None) -> Delivered:
        """``span``: the command's record's; the batch request gets a span of its own (a
        trace of its own, linked to each of its commands' records' spans)."""
        size = len(command.payload) + 1
        if self._pending and self._bytes + size > self._config.max_bytes:
            self._flush()
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future, span))
        self._bytes += size
        if len(self._pending) >= self._config.max_calls:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._config.linger_ms / 1000, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch = self._pending
        self._pending = []
        self._bytes = _ENVELOPE_BYTES
        task = asyncio.create_task(self._deliver(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, batch: list[Pending]) -> None:
        live = [pending for pending in batch if not pending[1].done()]  # a cancelled sender needs no answer
        if not live:
            return
        sampled = any(span is None or span.sampled for _, _, span in live)  # as its records are
        request = new_trace(1.0 if sampled else 0.0)
        try:
            async with self._requests:
                self.requests += 1
                payload = batch_payload([command for command, _, _ in live])
                delivered = await self._client.send("batch", payload, request)
        except RejectedError as exc:
            self._traced(request, live, exc.status)
            if len(live) == 1 or exc.status not in (400, 413):
                _fail(live, exc)
                return
            self.splits += 1
            middle = len(live) // 2
            await asyncio.gather(self._deliver(live[:middle]), self._deliver(live[middle:]))
        except DeliveryError as exc:
            self._traced(request, live, exc.status)
            _fail(live, exc)
        except Exception as exc:  # a bug, a failing pace: each sender raises it, as without batching
            self._traced(request, live, None)
            _crash(live, exc)
        else:
            self._traced(request, live, delivered.status)
            for _, future, _ in live:
                if not future.done():
                    future.set_result(delivered)

    def _traced(self, request: Span, batch: list[Pending], status: int | None) -> None:
        """The batch request's span (with ``observability.tracing``), linked to its records'."""
        if self._spans is not None:
            self._spans.batch(request, [span for _, _, span in batch if span is not None], status, len(batch))


def _fail(batch: list[Pending], error: DeliveryError | RejectedError) -> None:
    """Each command gets an exception of its own: each sender raises it, and a raised
    exception collects that sender's traceback."""
    for _, future, _ in batch:
        if not future.done():
            if isinstance(error, RejectedError):
                copy: Exception = RejectedError(error.reason, status=error.status)
            else:
                copy = type(error)(error.reason, status=error.status, retry_after=error.retry_after)
            future.set_exception(copy)


def _crash(batch: list[Pending], error: Exception) -> None:
    """An error that is neither an answer nor a refusal: every command of the request fails
    with it (no future is left unresolved, its lane waiting for ever)."""
    for _, future, _ in batch:
        if not future.done():
            failure = RuntimeError(f"the batch request failed: {type(error).__name__}")
            failure.__cause__ = error
            future.set_exception(failure)
