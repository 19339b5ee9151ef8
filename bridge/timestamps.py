"""Event times: anything a rule may yield → Intilery's ISO-8601 UTC form.

Accepts ISO-8601 with any offset (a time without one is taken as UTC), epoch
seconds or epoch milliseconds (numbers or digit strings; values of 1e11 and
above are milliseconds). Gives ``2019-11-18T13:30:12.984Z``. Raises
``ValueError`` with the reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_NUMERIC = re.compile(r"^[+-]?\d+(\.\d+)?$")
_MS_THRESHOLD = 1e11  # 1e11 seconds is the year 5138; smaller values are seconds


_CANONICAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def format_utc(moment: datetime) -> str:
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


def from_epoch_ms(ms: int) -> str:
    try:  # a record's own timestamp may be anything a producer set
        return format_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"epoch value out of range: {ms}") from exc


def parse_time(value: Any) -> datetime:
    """The moment ``value`` names, timezone-aware."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        value = float(value)
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            shown = str(value) if len(str(value)) <= 40 else f"a {len(str(value))}-digit number"
            raise ValueError(f"epoch value out of range: {shown}") from exc
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO-8601 time or epoch number: {text[:40]!r}") from exc
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise ValueError(f"a {type(value).__name__} is not a time")


def normalise(value: Any) -> str:
    return normalise_ms(value)[0]


def normalise_ms(value: Any) -> tuple[str, int]:
    """The Intilery form of ``value`` and the same moment in epoch milliseconds."""
    moment = parse_time(value)  # also refuses impossible dates such as month 13
    try:  # a time near year 1 or 9999 whose offset takes it past either end in UTC
        text = value if isinstance(value, str) and _CANONICAL.match(value) else format_utc(moment)
        return text, int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"time out of range in UTC: {str(value)[:40]!r}") from exc


_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration_text(seconds: float) -> str:
    """A duration as a configuration writes one: 7200 → ``2h``, 5400 → ``1h30m``, 0.5 → ``500ms``."""
    if seconds < 1 or seconds != int(seconds):
        whole = int(seconds)
        rest = f"{round((seconds - whole) * 1000)}ms"
        return rest if not whole else duration_text(whole) + rest
    parts = []
    left = int(seconds)
    for unit, size in _DURATION_UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)
