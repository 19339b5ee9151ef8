"""requirements.lock (the image) and requirements-dev.lock (make test, CI): every
dependency of pyproject.toml pinned at a version its range allows, every file hashed, so
that a change to pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;[^\\]*)?\s*\\?$")


def pins(name: str) -> dict[str, tuple[str, int]]:
    """Each locked package: its version and how many hashes it carries."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / name).read_text().splitlines():
        if entry := ENTRY.match(line):
            current = canonicalize_name(entry.group(1))
            found[current] = (entry.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PYPROJECT["dependencies"]),
        ("requirements-dev.lock", PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"]),
    ],
)
def test_the_lock_is_in_step_with_pyproject(lock: str, requirements: list[str]) -> None:
    locked = pins(lock)
    assert len(locked) > len(requirements)  # their dependencies too
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock}: make lock"
        assert requirement.specifier.contains(locked[name][0]), f"{name}=={locked[name][0]}: make lock"
    unhashed = [name for name, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, unhashed


def test_the_image_lock_holds_no_test_tools_and_agrees_with_the_dev_lock() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    for tool in ("pytest", "mypy", "ruff", "hypothesis"):
        assert tool not in runtime and tool in dev
    assert {name: version for name, (version, _) in runtime.items()} == {
        name: dev[name][0] for name in runtime
    }


def test_make_and_ci_install_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
