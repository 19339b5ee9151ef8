"""What a ``replay`` or ``redrive`` is asked to do, as the operations take it: request
objects the CLI fills from its flags (the operations never see argparse)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.kafka.deadletter import ERROR_CLASS, RULE, SOURCE_TOPIC


@dataclass(frozen=True, kw_only=True)
class WindowRun:
    """How a window is sent, for both verbs."""

    group: str | None = None  # the run's own group: its progress is committed there
    dry_run: bool = False  # print what would be sent, send nothing
    rate: float | None = None  # requests/s of its own (None: a tenth of the account's)
    observability_port: int | None = None  # serve /metrics there (None: not at all)
    ignore_max_age: bool = False  # send commands older than their rule's max_age too
    ignore_dedupe: bool = (
        False  # send rules' dedupe copies too, on purpose (the state neither asked nor told)
    )
    ignore_caps: bool = False  # send past the caps and flood breakers too (neither asked nor told)


@dataclass(frozen=True, kw_only=True)
class ReplayRequest(WindowRun):
    """``replay``: a window of one source topic, by offsets, times or from the beginning."""

    topic: str
    from_offset: str | None = None  # "PARTITION:OFFSET,..."
    to_offset: str | None = None  # inclusive
    from_time: str | None = None  # ISO 8601
    to_time: str | None = None
    from_beginning: bool = False


@dataclass(frozen=True, kw_only=True)
class RedriveRequest(WindowRun):
    """``redrive``: the dead-letter topic, all of it or what the filters pick."""

    error_class: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    source_topic: tuple[str, ...] = ()
    discard: bool = False  # acknowledge what the filters pick, send nothing (bridge.ops.discard)

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The filters as the dead-letter headers they match."""
        wanted = {
            ERROR_CLASS: self.error_class,
            RULE: self.rule,
            SOURCE_TOPIC: self.source_topic,
        }
        return {header: values for header, values in wanted.items() if values}
