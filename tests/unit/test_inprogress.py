"""A record in progress is finished once: when its outcome is decided and every write it
waits for (its commands' audit entries) is released, in whichever order they come; its
partition's state then finishes its offset and its span ends."""

from __future__ import annotations

from typing import Any

from bridge.model import Record
from bridge.runtime.inprogress import RecordInProgress, RecordOutcome
from bridge.tracing import Span, new_trace


class Finishing:
    """The partition state's and the outcomes' side of finishing, as they are told."""

    def __init__(self, finished: list[RecordOutcome | None]) -> None:
        self.told = finished
        self.offsets: list[int] = []

    def finish(self, offset: int) -> None:
        self.offsets.append(offset)

    def finished(self, record: Record, span: Span, outcome: RecordOutcome) -> None:
        assert self.offsets == [record.offset], "its offset is finished before its span ends"
        self.told.append(outcome)


def in_progress(finished: list[RecordOutcome | None]) -> RecordInProgress:
    record = Record("bookings", 0, 7, None, b"{}", [], None)
    finishing: Any = Finishing(finished)
    mapper: Any = None
    return RecordInProgress(record, finishing, [], record, mapper, new_trace(1.0), finishing)


def test_finished_when_decided_with_nothing_held() -> None:
    finished: list[RecordOutcome | None] = []
    in_progress(finished).decide(RecordOutcome.SKIPPED)
    assert finished == [RecordOutcome.SKIPPED]


def test_writes_released_after_the_decision_finish_it_with_the_last() -> None:
    finished: list[RecordOutcome | None] = []
    work = in_progress(finished)
    first, second = work.hold(), work.hold()
    work.decide(RecordOutcome.DELIVERED)
    first()
    first()  # released twice: counted once
    assert finished == [] and work.held == 1
    second()
    assert finished == [RecordOutcome.DELIVERED]


def test_writes_released_before_the_decision_wait_for_it() -> None:
    finished: list[RecordOutcome | None] = []
    work = in_progress(finished)
    work.hold()()
    assert finished == []
    work.decide(RecordOutcome.DELIVERED)
    work.decide(RecordOutcome.DELIVERED)  # never finished twice
    assert finished == [RecordOutcome.DELIVERED]
