"""A record the bridge is working on, from the moment it is read until it is finished, and
how it ended.

:class:`RecordInProgress` knows the record's outcome once the record path decides it and
counts the writes the record still waits for (its commands' audit entries): each write
takes a part with :meth:`~RecordInProgress.hold` and releases it when the broker has it.
The record is finished, once, when its outcome is known and nothing is held: its
partition's state finishes it in its offsets (so no commit passes a record whose
entries are not written) and its span ends. A sink never calls back into the record
path: it releases the part it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bridge.model import Command, Record
from bridge.rules.mapping import Mapper
from bridge.runtime.outcomes import Outcomes
from bridge.runtime.state import PartitionState
from bridge.safety.early import EarlySteps
from bridge.tracing import Span


class RecordOutcome(StrEnum):
    """How a record ended (the ``outcome`` of its span)."""

    # every command sent, withheld (stale, incomplete), sent before, a copy (dedupe), or
    # dead-lettered alone (over a cap, held by a flood breaker)
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # no rule made a command of it
    DEAD_LETTERED = "dead_lettered"  # the dead-letter topic has it


@dataclass(slots=True)
class RecordInProgress:
    record: Record  # where the record was read: its offset is tracked and committed
    state: PartitionState  # of its partition
    commands: list[Command] | None  # None: decoded in the lane, once its schema is fetched
    origin: Record  # what the rules see: the record itself, or for redrive its original
    mapper: Mapper  # the rules it is mapped by: those in force when it was read
    span: Span  # its trace: continued from its traceparent header, else a new one
    outcomes: Outcomes = field(repr=False)  # ends its span when it is finished
    outcome: RecordOutcome | None = None  # decided by the record path
    held: int = 0  # writes it waits for: audit entries on their way
    early: EarlySteps | None = None  # its commands' customer-safety steps, asked when it was read
    finished: bool = False

    def hold(self) -> Callable[[], None]:
        """One more write the record waits for; the callable given releases it (once)."""
        self.held += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.held -= 1
                self._finish_when_done()

        return release

    def decide(self, outcome: RecordOutcome) -> None:
        """The record path is done with it: finished now, or when the last write is released."""
        self.outcome = outcome
        self._finish_when_done()

    def _finish_when_done(self) -> None:
        if self.outcome is not None and not self.held and not self.finished:
            self.finished = True
            self.state.finish(self.record.offset)  # a commit may pass it now
            self.outcomes.finished(self.record, self.span, self.outcome)
