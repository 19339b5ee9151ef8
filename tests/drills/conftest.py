"""The drills' fixtures: a cluster with the drills' topics, and no secret in any
file a drill wrote. Helpers are in tests/drills/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drills.support import PARTITIONS
from tests.support import SECRETS, TestKafka


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
