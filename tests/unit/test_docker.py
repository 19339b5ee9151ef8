"""The image's build context: only what the Dockerfile copies (a build context once took
.venv, 358 MB, and .cache, 99 MB)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

ROOT = Path(__file__).parents[2]


def sent(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the context) by .dockerignore's rules: the
    last matching pattern wins, a pattern also matches what is under it, ``!`` re-includes."""
    included = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.removeprefix("!")
        parts = path.split("/")
        if pattern.startswith("**/"):  # at any depth: a name anywhere in the path
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:  # from the top: the path or a folder above it
            hit = any(fnmatch.fnmatch("/".join(parts[: n + 1]), pattern) for n in range(len(parts)))
        if hit:
            included = negate
    return included


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    copied = [
        source
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert copied and all(sent(source) for source in copied), copied
    assert all(sent(path) for path in ("bridge/cli/__init__.py", "bridge/examples/bridge.yaml"))
    for heavy in (".venv/bin/python", ".cache/kafka/x.jar", ".git/HEAD", "tests/corpus/a.json", "docs/x.md"):
        assert not sent(heavy), heavy
    assert not sent("bridge/__pycache__/model.cpython-311.pyc")
