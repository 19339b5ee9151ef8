"""Whether the bridge stops, should pause, is alive and is ready.

:class:`Stop` is the bridge's one stop switch: a request (SIGTERM), or a failure
that halts its partition at the record that failed. :class:`BackPressure` says
when to pause the consumer. :class:`Health` answers ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bridge.intilery.sending import Sender
from bridge.kafka.source import Source
from bridge.model import Record, TopicPartitionKey

log = structlog.get_logger("bridge")

EXIT_OK, EXIT_PERMANENT_FAILURE, EXIT_KAFKA_FATAL = 0, 3, 4
OUTAGE_AFTER_S = 10.0  # every attempt failing this long: not ready
LOOP_STALL_S = 30.0  # the consume loop not going round this long: not healthy


class Stop:
    """Whether the bridge is stopping, why, and where each failed partition halted."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.draining = False  # stopping on request: commands in flight finish, no new ones start
        self.failure: str | None = None
        self.exit_code = EXIT_OK
        self._halted_at: dict[TopicPartitionKey, int] = {}  # the record each failure stopped at

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        self.draining = True
        self.event.set()

    def fail(self, message: str, code: int = EXIT_PERMANENT_FAILURE, at: Record | None = None) -> None:
        """Stop the bridge; records from ``at`` on in its partition are never sent or finished."""
        if at is not None:
            self._halted_at[at.tp] = min(at.offset, self._halted_at.get(at.tp, at.offset))
        if self.failure is None:
            self.failure, self.exit_code = message, code
            log.error("bridge_failed", reason=message)
        self.event.set()

    def halted(self, record: Record) -> bool:
        halted_at = self._halted_at.get(record.tp)
        return halted_at is not None and record.offset >= halted_at


@dataclass(frozen=True, slots=True)
class BackPressure:
    """Pause the consumer at ``max_buffered`` records held (read, not finished) and resume
    below half of it, so that it does not flap; hold back too while Intilery refuses the
    credentials and some lane is left to probe them."""

    max_buffered: int

    def pause(self, held: int, paused: bool, auth_blocked: bool) -> bool:
        return auth_blocked or held >= self.max_buffered or (paused and held > self.max_buffered // 2)

    def room(self, held: int, paused: bool, auth_blocked: bool) -> bool:
        """Whether ``held`` records (counting a batch read ahead) stay below the bound, the
        consumer neither paused nor held back: a read ahead overshoots by a batch at most."""
        return not paused and not self.pause(held, False, auth_blocked)


class Health:
    """``/healthz``: the consume loop goes round. ``/readyz``: a member of the group that
    Intilery answers. Each gives the reasons it fails (none: healthy, ready)."""

    def __init__(
        self, source: Source, sender: Sender, stop: Stop, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source, self._sender, self._stop, self._clock = source, sender, stop, clock
        self.loop_at = clock()

    def went_round(self) -> None:
        self.loop_at = self._clock()

    def health(self) -> list[str]:
        stalled = self._clock() - self.loop_at
        return [f"the consume loop has not run for {stalled:.0f}s"] if stalled > LOOP_STALL_S else []

    def readiness(self) -> list[str]:
        reasons = []
        if not self._source.member:  # a member with no partitions is a ready standby
            reasons.append("not yet a member of the consumer group")
        if self._sender.gate.auth_failed:
            reasons.append("Intilery refuses the credentials (401/403)")
        failing = self._sender.failing_since
        if failing is not None and self._clock() - failing > OUTAGE_AFTER_S:
            reasons.append(f"every request to Intilery has failed for {self._clock() - failing:.0f}s")
        if self._stop.requested:
            reasons.append("stopping")
        return reasons
