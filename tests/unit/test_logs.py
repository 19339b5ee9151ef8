"""Log helpers: repeats held back, secrets redacted."""

from __future__ import annotations

import io
import json

import structlog

from bridge.logs import Repeats, configure


def test_a_repeated_message_passes_once_per_window_and_counts_what_was_held_back() -> None:
    now = [0.0]
    repeats = Repeats(window_s=10, clock=lambda: now[0])
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 0ms)") == 0
    now[0] = 1
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 3ms)") is None  # numbers aside, the same
    assert repeats.allow("1/1 brokers are down") == 0  # a different message passes
    now[0] = 10.5
    assert repeats.allow("Connect to 127.0.0.1:9092 failed (after 7ms)") == 1


def test_user_ids_can_be_hashed_in_log_lines() -> None:
    stream = io.StringIO()
    configure("info", stream, hash_user_ids=True)
    try:
        structlog.get_logger("t").info("command_delivered", userId="C-42", rule="r")
        structlog.get_logger("t").info("command_delivered", userId="C-42", rule="r")
    finally:
        configure("info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "C-42" not in stream.getvalue()
    assert lines[0]["userId"] == lines[1]["userId"] and lines[0]["userId"].startswith("sha256:")
    assert len(lines[0]["userId"]) == len("sha256:") + 16 and lines[0]["rule"] == "r"
