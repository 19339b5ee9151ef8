"""Whether the bridge stops, should pause, is alive and is ready.

:class:`Stop` is the bridge's one stop switch: a request (SIGTERM), or a failure
(its partition halts at the record that failed: the partition's state keeps where).
:class:`BackPressure` says when to pause the consumer. :class:`Health` answers ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bridge.logs import redact
from bridge.runtime.ports import CommandSender, RecordSource
from bridge.runtime.sinks import OwnTopicSinks
from bridge.runtime.state import Assignment
from bridge.safety.state import State

log = structlog.get_logger("bridge")

EXIT_OK = 0
EXIT_PERMANENT_FAILURE = 3
EXIT_KAFKA_FATAL = 4
OUTAGE_AFTER_S = 10.0  # every attempt failing this long: not ready
LOOP_STALL_S = 30.0  # the consume loop not going round this long: not healthy


class Stop:
    """Whether the bridge is stopping, why, and where each failed partition halted."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.draining = False  # stopping on request: commands in flight finish, no new ones start
        self.failure: str | None = None
        self.exit_code = EXIT_OK
        self._deadline = math.inf  # of the shutdown's grace

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        """A stop asked for (SIGTERM, SIGINT); asked again, the grace ends now: commands in
        flight are abandoned, what is finished is committed, and the bridge exits."""
        if self.draining:
            self._deadline = time.monotonic()
        self.draining = True
        self.event.set()

    def begin(self, grace_s: float) -> None:
        """The shutdown starts: it waits for commands in flight ``grace_s`` at most."""
        self._deadline = min(self._deadline, time.monotonic() + grace_s)

    def left(self) -> float:
        """Seconds of grace left."""
        return max(0.0, self._deadline - time.monotonic())

    def fail(self, message: str, code: int = EXIT_PERMANENT_FAILURE) -> None:
        """Stop the bridge (its partition halts at the record that failed:
        :meth:`PartitionState.halt <bridge.runtime.state.PartitionState.halt>`)."""
        if self.failure is None:
            self.failure, self.exit_code = message, code
            log.error("bridge_failed", reason=message)
        self.event.set()


@dataclass(frozen=True, slots=True)
class BackPressure:
    """Pause the consumer at ``max_buffered`` records held (read, not finished) or
    ``max_bytes`` of them, and resume below half of both, so that it does not flap; hold
    back too while Intilery refuses the credentials and some lane is left to probe them."""

    max_buffered: int
    max_bytes: int = 64 * 1024 * 1024

    def pause(self, held: int, held_bytes: int, paused: bool, auth_blocked: bool) -> bool:
        full = held >= self.max_buffered or held_bytes >= self.max_bytes
        above_half = held > self.max_buffered // 2 or held_bytes > self.max_bytes // 2
        return auth_blocked or full or (paused and above_half)

    def room(self, held: int, held_bytes: int, paused: bool, auth_blocked: bool) -> bool:
        """Whether ``held`` records of ``held_bytes`` (counting a batch read ahead) stay below
        the bounds, the consumer neither paused nor held back: a read ahead overshoots by a
        batch at most."""
        return not paused and not self.pause(held, held_bytes, False, auth_blocked)


SAFETY_AWAY = "the customer-safety state (dedupe, caps) does not answer: the commands that need it wait"


class Health:
    """``/healthz``: the consume loop goes round. ``/readyz``: a member of the group that
    Intilery answers. Each gives the reasons it fails (none: healthy, ready)."""

    def __init__(
        self,
        source: RecordSource,
        sender: CommandSender,
        stop: Stop,
        clock: Callable[[], float] = time.monotonic,
        sinks: OwnTopicSinks | None = None,
        states: Assignment | None = None,
        stuck_after_s: float = 300.0,
        safety: State | None = None,
    ) -> None:
        self._source = source
        self._sender = sender
        self._stop = stop
        self._clock = clock
        self._sinks = sinks
        self._states = states
        self._stuck_after_s = stuck_after_s
        self._safety = safety
        self.loop_at = clock()

    def went_round(self) -> None:
        self.loop_at = self._clock()

    def health(self) -> list[str]:
        stalled = self._clock() - self.loop_at
        return [f"the consume loop has not run for {stalled:.0f}s"] if stalled > LOOP_STALL_S else []

    def membership(self) -> list[str]:
        """``/readyz?scope=group``: a member of the consumer group (a member with no
        partitions is a ready standby) and not stopping; what a rollout and a drain wait for."""
        return self._not_member() + self._stopping()

    def readiness(self) -> list[str]:
        """``/readyz``: a member, and delivering: Intilery taking the token and answering, the
        dead-letter topic taking writes, the customer-safety state answering, no partition stuck."""
        reasons = self._not_member()
        if self._sender.gate.auth_failed:
            reasons.append(self._sender.gate.refusal)
        failing = self._sender.failing_since
        if failing is not None and self._clock() - failing > OUTAGE_AFTER_S:
            reasons.append(f"every request to Intilery has failed for {self._clock() - failing:.0f}s")
        if self._sinks is not None:
            reasons += self._sinks.refusals(self._clock(), OUTAGE_AFTER_S)
        if self._safety is not None and not self._safety.up:
            reasons.append(
                "the customer-safety state (dedupe, caps) does not answer: the commands that need it wait"
            )
        if self._states is not None and (stuck := self._states.stuck(self._clock(), self._stuck_after_s)):
            named = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(stuck))
            waited = f"no commit for over {self._stuck_after_s:.0f}s while records wait"
            reasons.append(f"{waited} (delivery.stuck_after_s): {named}")
        return reasons + self._stopping()

    def _not_member(self) -> list[str]:
        if self._source.member:
            return []
        error = self._source.last_error and redact(self._source.last_error)  # a broker unreachable
        return ["not yet a member of the consumer group" + (f" (Kafka: {error})" if error else "")]

    def _stopping(self) -> list[str]:
        return ["stopping"] if self._stop.requested else []
