"""The drills' fixtures: a cluster with the drills' topics, the bridge under drill, and
no secret in any file a drill wrote. Helpers are in tests/drills/support.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.drills.support import PARTITIONS, DrillBridge
from tests.support import SECRETS, TestKafka, start_bridge, write_config


@pytest.fixture
def drill_cluster(cluster: TestKafka) -> TestKafka:
    # Records up to 8 MB (the hostile-input drill's largest is 2 MB); the dead-letter
    # topic keeps the broker's default of 1 MB, so a 2 MB record is dead-lettered without its value.
    cluster.create_topic(cluster.topic, PARTITIONS, **{"max.message.bytes": str(8 << 20)})
    cluster.create_topic(cluster.dlq, 1)
    return cluster


@pytest.fixture(autouse=True)
def no_secret_in_any_output(tmp_path: Path) -> Iterator[None]:
    """After every drill: no secret in any file it wrote (every bridge's log lines and
    error messages go to files under ``tmp_path``)."""
    yield
    for file in tmp_path.rglob("*"):
        if file.is_file():
            found = [s for s in SECRETS if s.encode() in file.read_bytes()]
            assert not found, f"secrets in {file.name}"


@pytest.fixture
def drill_bridge(tmp_path: Path) -> DrillBridge:
    """The drills' bridge: ``with drill_bridge(config, log_path) as process:`` starts
    ``intilery-bridge run`` on the configuration (a dict, written under ``tmp_path``, or a
    file), its log lines to ``log_path``; on leaving, SIGTERM, and it must stop cleanly (0)."""

    @contextmanager
    def running(
        config: dict[str, Any] | Path, log_path: Path, *extra: str
    ) -> Iterator[subprocess.Popen[bytes]]:
        path = config if isinstance(config, Path) else write_config(tmp_path, config)
        process = start_bridge(path, log_path, *extra)
        try:
            yield process
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0, f"the bridge did not stop cleanly: {log_path.name}"

    return running
