"""How far a long read has come (`replay`, `redrive`, `diff`, `trace` over a window): a
line redrawn in place on a terminal, at most every second; elsewhere a line of its own at
most every 10 s; records read of the total, commands, rate and time left."""

from __future__ import annotations

import io

from bridge.ops.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_a_line_at_most_every_ten_seconds() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("diff", 100, out, made="differing", clock=clock)
    for done in range(1, 51):
        clock.now += 0.5  # 2 records a second: 25 s in all
        progress.update(done, done // 10)
    lines = out.getvalue().splitlines()
    assert lines == [
        "diff: 20/100 records, 2 differing, 2/s, 40s left",
        "diff: 40/100 records, 4 differing, 2/s, 30s left",
    ]
    progress.close()
    assert out.getvalue().count("\n") == 2  # nothing to end off a terminal


def test_on_a_terminal_one_line_redrawn_and_rubbed_out_for_other_lines() -> None:
    clock, out = Clock(), Terminal()
    progress = Progress("replay", 10, out, clock=clock)
    progress.update(0, 0)  # nothing due yet
    assert out.getvalue() == ""
    clock.now += 1.0
    progress.update(2, 1)
    assert out.getvalue() == "\rreplay: 2/10 records, 1 sent, 2/s, 4s left   "
    progress.say("bookings[0]@3: mapping: userId: required")
    assert out.getvalue().endswith("\r\033[Kbookings[0]@3: mapping: userId: required\n")
    clock.now += 1.0
    progress.update(10, 5)
    progress.close()
    assert out.getvalue().endswith("\rreplay: 10/10 records, 5 sent, 5/s, 0s left   \n")


def test_nothing_read_yet_says_the_time_left_is_unknown() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("trace", 5, out, made="entries", every_s=0.0, clock=clock)
    clock.now += 3
    progress.update(0, 0)
    assert out.getvalue() == "trace: 0/5 records, 0 entries, 0/s, time left unknown\n"
