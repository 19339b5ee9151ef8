"""The shape of the code stays walkable: no module over 300 lines, no class over 150, no
function over 50."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bridge

MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 300, 150, 50
ROOT = Path(bridge.__file__).parent


def oversized(
    root: Path = ROOT,
    limit_module: int = MAX_MODULE_LINES,
    limit_class: int = MAX_CLASS_LINES,
    limit_function: int = MAX_FUNCTION_LINES,
) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root.parent)
        if (lines := len(text.splitlines())) > limit_module:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                is_class = isinstance(node, ast.ClassDef)
                kind, limit = ("class", limit_class) if is_class else ("function", limit_function)
                if size > limit:
                    found.append(f"{name}: {kind} {node.name}: {size} lines")
    return found


def test_no_module_class_or_function_is_too_long() -> None:
    assert oversized() == []


def test_the_check_finds_a_long_module_class_and_function(tmp_path: Path) -> None:
    """On modules written for it (it expected the size of one of ours once)."""
    package = tmp_path / "package"
    package.mkdir()
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_CLASS_LINES))
    (package / "long.py").write_text("class Long:\n" + body + "\n" + "\n" * 200)
    steps = "\n".join(f"    y{n} = {n}" for n in range(MAX_FUNCTION_LINES))
    (package / "steps.py").write_text("def steps() -> None:\n" + steps + "\n")
    (package / "short.py").write_text("class Short:\n    x = 1\n\n\ndef short() -> None:\n    pass\n")
    assert oversized(package) == [
        f"package/long.py: {MAX_CLASS_LINES + 201} lines",
        f"package/long.py: class Long: {MAX_CLASS_LINES + 1} lines",
        f"package/steps.py: function steps: {MAX_FUNCTION_LINES + 1} lines",
    ]


def test_confluent_kafka_s_exceptions_are_translated_inside_kafka_only() -> None:
    """KafkaException was caught in seven places, runtime/factory.py among them: above
    bridge.kafka, errors are the bridge's own (BrokerError, ConfigError)."""
    outside = [
        str(path.relative_to(ROOT.parent))
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] not in ("kafka", "devtools")
        and "KafkaException" in path.read_text(encoding="utf-8")
    ]
    assert outside == []


def test_the_dead_letter_headers_are_named_in_one_module() -> None:
    """Their names were string literals in six modules; kafka/deadletter.py names, writes
    and reads them back (DeadLetterHeaders), every other module uses those."""
    home = ROOT / "kafka" / "deadletter.py"
    outside = [
        str(path.relative_to(ROOT.parent))
        for path in sorted(ROOT.rglob("*.py"))
        if path != home and re.search(r"""["']x-bridge-[a-z]""", path.read_text(encoding="utf-8"))
    ]
    assert outside == []
