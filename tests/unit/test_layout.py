"""The shape of the code stays walkable: no module over 300 lines, no class over 200."""

from __future__ import annotations

import ast
from pathlib import Path

import bridge

MAX_MODULE_LINES, MAX_CLASS_LINES = 300, 200
ROOT = Path(bridge.__file__).parent


def oversized(limit_module: int = MAX_MODULE_LINES, limit_class: int = MAX_CLASS_LINES) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT.parent)
        if (lines := len(text.splitlines())) > limit_module:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and (size := node.end_lineno - node.lineno + 1) > limit_class:  # type: ignore[operator]
                found.append(f"{name}: class {node.name}: {size} lines")
    return found


def test_no_module_or_class_is_too_long() -> None:
    assert oversized() == []


def test_the_check_finds_a_long_module_and_class() -> None:
    found = oversized(limit_module=250, limit_class=150)
    assert any(line.startswith("bridge/runtime/pipeline.py:") for line in found)
    assert any(": class Bridge:" in line for line in found)
