"""The shape of the code: one name per assignment, formatting never switched off,
Kafka's exceptions contained in bridge.kafka, the dead-letter headers named in one module.
(Sizes follow from the design: no line bound, which was met by packing lines.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bridge

ROOT = Path(bridge.__file__).parent
PACKAGES = [ROOT, ROOT.parent / "tests", ROOT.parent / "bench"]


def sources(*roots: Path) -> list[Path]:
    return [path for root in roots for path in sorted(root.rglob("*.py"))]


def packed_assignments(path: Path) -> list[str]:
    """``a, b, c = x, y, z``: three or more names set at once from as many values (one
    value unpacked, ``a, b, c = match.groups()``, is one thing and stays)."""
    text = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Tuple):
            continue
        for target in node.targets:
            if isinstance(target, ast.Tuple) and len(target.elts) >= 3:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(target)}")
    return found


def test_no_names_are_packed_into_one_assignment() -> None:
    """Twenty-nine assignments set three or more unrelated names at once (records.py set
    twelve attributes on three lines) to meet a line bound: one name per line."""
    assert [line for path in sources(*PACKAGES) for line in packed_assignments(path)] == []


def test_the_check_finds_a_packed_assignment(tmp_path: Path) -> None:
    (tmp_path / "packed.py").write_text("a, b, c = 1, 2, 3\nd, e, f = 'x y z'.split()\ng, h = 1, 2\n")
    assert packed_assignments(tmp_path / "packed.py") == ["packed.py:1: (a, b, c)"]


def test_no_formatting_is_switched_off() -> None:
    """`ruff format --check` runs in make lint; no line opts out of it."""
    marked = [
        str(path.relative_to(ROOT.parent))
        for path in sources(*PACKAGES)
        if re.search(r"#\s*fmt:\s*(skip|off)", path.read_text(encoding="utf-8"))
    ]
    assert marked == []


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


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules of ours ``path`` imports, those under ``TYPE_CHECKING`` included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known and name != module}


def import_cycles(root: Path) -> list[list[str]]:
    """Each cycle of imports among the package's modules, as the modules in it."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph = {name: imports_of(path, name, set(modules)) for name, path in modules.items()}
    cycles: list[list[str]] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        if name in stack:
            cycles.append(stack[stack.index(name) :])
            return
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph[name]):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    return cycles


def test_no_import_cycle_inside_the_package() -> None:
    """runtime.auditing imported runtime.records under TYPE_CHECKING for `Work`, which
    imported it back: the record in progress has a module of its own now."""
    assert import_cycles(ROOT) == []


def test_the_check_finds_an_import_cycle(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from package import b\n"
    )
    (package / "b.py").write_text("from package.a import x\n")
    assert import_cycles(package) == [["package.a", "package.b"]]


def test_only_the_partition_state_touches_its_offsets() -> None:
    """Four modules reached into `state.offsets.*`: the partition's state owns them now."""
    home = ROOT / "runtime" / "state.py"
    outside = [
        str(path.relative_to(ROOT.parent))
        for path in sorted(ROOT.rglob("*.py"))
        if path != home and re.search(r"\._?offsets\.", path.read_text(encoding="utf-8"))
    ]
    assert outside == []
