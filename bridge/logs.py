"""structlog set-up: JSON lines, snake_case event names, secrets redacted.

Every secret the configuration holds is registered here; a processor replaces
it in any string field of any log line, as a last line of defence behind the
rule that secrets are never logged at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _SECRETS:
        for key, value in event.items():
            event[key] = _redact(value)
    return event


class _KafkaLogHandler(logging.Handler):
    """librdkafka's own log lines, as ``kafka_log`` events in the same JSON stream."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger("bridge.librdkafka").log(
            record.levelno, "kafka_log", message=record.getMessage()
        )


def kafka_logger() -> logging.Logger:
    """The logger to pass to confluent-kafka clients as their ``logger`` property."""
    logger = logging.getLogger("bridge.librdkafka")
    if not logger.handlers:
        logger.addHandler(_KafkaLogHandler())
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=True,  # a proxy would rebuild its logger on every call
    )
