"""Log helpers: repeats held back, secrets redacted."""

from __future__ import annotations

from bridge.logs import Repeats


def test_a_repeated_message_passes_once_per_window_and_counts_what_was_held_back() -> None:
    now = [0.0]
    repeats = Repeats(window_s=10, clock=lambda: now[0])
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 0ms)") == 0
    now[0] = 1
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 3ms)") is None  # numbers aside, the same
    assert repeats.allow("1/1 brokers are down") == 0  # a different message passes
    now[0] = 10.5
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 7ms)") == 1
