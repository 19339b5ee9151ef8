"""structlog set-up: JSON lines, snake_case event names, secrets redacted.

Every secret the configuration holds is registered here; a processor replaces
it in every string of every log line, nested in lists and mappings too, as a
last line of defence behind the rule that secrets are never logged at all.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")


def redact(text: str) -> str:
    """``text`` with every registered secret and every URL's password replaced."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _USERINFO.sub(rf"\1:{REDACTED}@", text) if "@" in text else text


def printable(text: str) -> str:
    """``text`` for a terminal: control characters, line ends and lone surrogates escaped
    (``\\n``, ``\\x1b``, ``\\udce9``), so that what other writers put in a topic cannot
    move the cursor, forge a line or fail the encoding."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact(key): _redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redact(item) for item in value]
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _SECRETS:
        for key, value in event.items():
            event[key] = _redact(value)
    return event


class Repeats:
    """Lets a message through once per ``window_s``; the numbers in it (timings,
    counts) do not make it a different message. Says how many were held back."""

    def __init__(self, window_s: float = 10.0, clock: Any = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}

    def allow(self, message: str) -> int | None:
        """None to drop this one; else how many like it were dropped since the last."""
        key = re.sub(r"\d+", "#", message)
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if len(self._seen) > 1000:  # bounded: forget everything rather than grow
            self._seen.clear()
        self._seen[key] = (now, 0)
        return last[1] if last else 0


class _KafkaLogHandler(logging.Handler):
    """librdkafka's own log lines, as ``kafka_log`` events in the same JSON stream
    (a line repeated while a broker is unreachable is logged once per 10 s)."""

    def __init__(self) -> None:
        super().__init__()
        self._repeats = Repeats()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        repeated = self._repeats.allow(message)
        if repeated is not None:
            structlog.get_logger("bridge.librdkafka").log(
                record.levelno, "kafka_log", message=message, **({"repeated": repeated} if repeated else {})
            )


def kafka_logger() -> logging.Logger:
    """The logger to pass to confluent-kafka clients as their ``logger`` property."""
    logger = logging.getLogger("bridge.librdkafka")
    if not logger.handlers:
        logger.addHandler(_KafkaLogHandler())
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


def hash_user_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``userId`` as ``sha256:<16 hex>``: the same customer gives the same value, so log
    lines still correlate, but the id itself is not in the logs (``log.hash_user_ids``)."""
    user = event.get("userId")
    if user is not None:
        event["userId"] = "sha256:" + hashlib.sha256(str(user).encode()).hexdigest()[:16]
    return event


def configure(level: str = "info", stream: TextIO | None = None, hash_user_ids: bool = False) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([hash_user_id] if hash_user_ids else []),
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=True,  # a proxy would rebuild its logger on every call
    )
