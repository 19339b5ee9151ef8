"""The image's build context: only what the Dockerfile copies (a build context once took
.venv, 358 MB, and .cache, 99 MB)."""

from __future__ import annotations

import fnmatch
import re
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


def test_the_image_leaves_out_the_kafka_tools_and_takes_the_lock() -> None:
    """The launcher of the test broker (Maven, a JVM) and librdkafka's mock cluster are
    tools, not the service: the image's package is built without them
    (tests/integration/test_demo.py runs that package)."""
    for tool in ("kafka.py", "kafkanode.py", "kafkaadmin.py", "mockcluster.py"):
        assert not sent(f"bridge/devtools/{tool}"), tool
    assert sent("bridge/devtools/demo.py") and sent("bridge/devtools/sandbox/server.py")
    assert sent("requirements.lock")


def test_the_image_is_pinned_base_and_dependencies() -> None:
    """The base image by digest; the dependencies at the lock's versions, each file checked
    against its hash, and the package itself adding none."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    (base,) = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.1\d-slim(-\w+)?@sha256:[0-9a-f]{64}", base), base
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs[0] == "RUN pip install --no-cache-dir --require-hashes -r requirements.lock"
    assert all("--no-deps" in line for line in installs[1:]), installs
