"""How two sets of rules differ on one record: their commands matched by rule name and
position within that rule's output, and compared field by field. Shared by ``diff``
(:mod:`bridge.ops.diffing`), shadow rules (:mod:`bridge.runtime.shadow`) and the rule
tests (:mod:`bridge.ops.ruleresults`, which print differences the same way)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from bridge.errors import RecordError
from bridge.model import Command

KINDS = ("added", "removed", "changed", "unchanged")
Mapped = list[Command] | RecordError  # a record's commands, or why it would be dead-lettered


def mapped(make: Callable[..., list[Command]], *args: Any) -> Mapped:
    """``make(*args)``, or the error that would dead-letter the record."""
    try:
        return make(*args)
    except RecordError as exc:
        return exc


def keyed(commands: Mapped) -> dict[tuple[str, int], Command]:
    """Commands by (rule, position within that rule's output); none for a dead letter."""
    if isinstance(commands, RecordError):
        return {}
    found: dict[tuple[str, int], Command] = {}
    seen: Counter[str] = Counter()
    for command in commands:
        found[command.rule, seen[command.rule]] = command
        seen[command.rule] += 1
    return found


def matched(current: Mapped, candidate: Mapped) -> list[tuple[str, Command | None, Command | None]]:
    """Per matched pair: the rule and both commands (None: that set made none); in the
    rules' order when both made commands of the same rules, else by rule and position."""
    if (
        not isinstance(current, RecordError)
        and not isinstance(candidate, RecordError)
        and [command.rule for command in current] == [command.rule for command in candidate]
    ):  # the usual case: the same rules made commands
        return [(old.rule, old, new) for old, new in zip(current, candidate, strict=True)]
    before, after = keyed(current), keyed(candidate)
    return [(key[0], before.get(key), after.get(key)) for key in sorted(before.keys() | after.keys())]


def difference(old: Command | None, new: Command | None) -> str:
    """``added``, ``removed``, ``changed`` or ``unchanged``: what the candidate does to a
    matched command. Cheap when the bytes Intilery would get are the same, or the bodies
    plainly differ; field by field only when neither says (keys in another order)."""
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if old.action != new.action:
        return "changed"
    if old.payload == new.payload:
        return "unchanged"
    if old.body != new.body:
        return "changed"
    return "changed" if field_diff(old.body, new.body, "body", subset=False) else "unchanged"


def compared(old: Command | None, new: Command | None) -> tuple[str, list[str]]:
    """The kind of difference between two matched commands, and its lines, field by field
    as ``test`` prints them (expected: the current rules' value, got: the candidate's)."""
    kind = difference(old, new)
    if kind == "added" and new is not None:
        return kind, [f"body: {_shown(new.body, 300)}"]
    if kind == "removed" and old is not None:
        return kind, [f"body: {_shown(old.body, 300)}"]
    if kind == "unchanged" or old is None or new is None:
        return kind, []
    lines = field_diff(old.body, new.body, "body", subset=False)
    if old.action != new.action:
        lines.insert(0, f"action: expected {old.action!r}, got {new.action!r}")
    return kind, lines


def field_paths(lines: list[str]) -> list[str]:
    """The field paths of difference lines, without their values (for log lines)."""
    return [line.split(": ", 1)[0] for line in lines]


def field_diff(want: Any, got: Any, path: str, subset: bool) -> list[str]:
    """Where ``got`` differs from ``want``: one line per field path, both values. With
    ``subset`` a mapping may hold keys ``want`` does not name. Numbers compare by value
    (``10`` equals ``10.0``), but a boolean is never a number."""
    if isinstance(want, dict) and isinstance(got, dict):
        lines = []
        for key, value in want.items():
            if key not in got:
                lines.append(f"{path}.{key}: expected {_shown(value)}, missing")
            else:
                lines += field_diff(value, got[key], f"{path}.{key}", subset)
        if not subset:
            lines += [f"{path}.{key}: not expected, got {_shown(got[key])}" for key in got if key not in want]
        return lines
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [
            line
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for line in field_diff(w, g, f"{path}[{i}]", subset)
        ]
    return [] if _same(want, got) else [f"{path}: expected {_shown(want)}, got {_shown(got)}"]


def _same(want: Any, got: Any) -> bool:
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool):
        return not isinstance(got, bool) and want == got
    return type(want) is type(got) and want == got


def _shown(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
