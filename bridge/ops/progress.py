"""How far a long read has come, for ``replay``, ``redrive`` and ``diff`` or ``trace``
over a window: records read of the window's total, commands (sent, or made), rate and
time left. On a terminal, one line on stderr redrawn in place at most every second;
elsewhere (a pipe, a file, ``--output json``) a line of its own at most every 10 s. A
replay of a day at Intilery's rate takes hours: the operator must see it move."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

import structlog

log = structlog.get_logger("bridge.ops.progress")

TERMINAL_EVERY_S = 1.0
PIPE_EVERY_S = 10.0


class Progress:
    """``update()`` as often as wanted; a line is drawn only when one is due. ``made`` names
    the commands counted (``sent``, ``commands``, ``entries``); ``log_event``, when given,
    is logged with each line drawn off a terminal (``replay_progress``)."""

    def __init__(
        self,
        verb: str,
        total: int,
        stream: TextIO,
        made: str = "sent",
        log_event: str | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verb = verb
        self.total = total
        self.stream = stream
        self.made = made
        self.log_event = log_event
        self.interactive = _is_terminal(stream)
        default = TERMINAL_EVERY_S if self.interactive else PIPE_EVERY_S
        self.every_s = default if every_s is None else every_s
        self._clock = clock
        self._started = self._last = clock()
        self._drawn = False

    def update(self, done: int, made: int) -> None:
        """``done`` records of the total read, ``made`` commands; draws when a line is due."""
        now = self._clock()
        if now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate else None
        left = f"{eta:.0f}s left" if eta is not None else "time left unknown"
        line = f"{self.verb}: {done}/{self.total} records, {made} {self.made}, {rate:.0f}/s, {left}"
        self._write(f"\r{line}   " if self.interactive else f"{line}\n")
        self._drawn = True
        if self.log_event is not None and not self.interactive:
            eta_s = round(eta, 1) if eta is not None else None
            fields = {"done": done, "total": self.total, "sent": made, "rate": round(rate, 1), "eta_s": eta_s}
            log.info(self.log_event, run=self.verb, **fields)

    def say(self, line: str) -> None:
        """A line of another kind on the same stream (a note, a failure): the progress line
        is rubbed out first, and drawn again by the next update."""
        if self.interactive and self._drawn:
            self._write("\r\033[K")
            self._drawn = False
        print(line, file=self.stream)

    def close(self) -> None:
        """The line redrawn in place ends, so what follows starts a line of its own."""
        if self.interactive and self._drawn:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr gone or closed: progress is not worth failing for
            pass


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
