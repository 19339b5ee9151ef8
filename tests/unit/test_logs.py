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


def test_redis_passwords_are_secrets() -> None:
    """intilery.rate_limit.redis: the password field and one inside the URL are redacted."""
    from bridge.logs import redact
    from bridge.ops.loading import is_secret_field, register_secrets

    redis = {"url": "redis://:url-pw-7c1@r:6379/0", "password": "field-pw-3b9"}
    register_secrets({"intilery": {"rate_limit": {"redis": redis}}})
    assert "url-pw-7c1" not in redact("redis://:url-pw-7c1@r:6379/0")
    assert "field-pw-3b9" not in redact("auth failed for field-pw-3b9")
    assert is_secret_field("intilery.rate_limit.redis.password: REDIS_PASSWORD is not set")


def test_a_secret_nested_in_a_log_field_is_redacted_too() -> None:
    from bridge.logs import REDACTED, register_secret

    secret = "zq8-nested-token-zq8"  # no other test's secret is part of it
    register_secret(secret)
    stream = io.StringIO()
    configure("info", stream)
    try:
        structlog.get_logger("t").info("x", reason=secret, details={"auth": [f"Bearer {secret}"], secret: 1})
    finally:
        configure("info")
    assert secret not in stream.getvalue()
    line = json.loads(stream.getvalue())
    assert line["details"] == {"auth": [f"Bearer {REDACTED}"], REDACTED: 1}
