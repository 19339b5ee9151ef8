"""Counts in the verbs' output, with the noun agreeing: ``1 command``, ``2 commands``."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun``, plural unless it is one (``plural``: where an s will not do)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
