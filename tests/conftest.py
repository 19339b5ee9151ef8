"""Shared fixtures: a real Apache Kafka broker (one per test process, each test
with topics of its own), librdkafka's mock cluster where only it can stage a
fault, and the sandbox over real HTTP. Helpers are in tests/support.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.devtools.kafka import KafkaCluster
from bridge.devtools.mockcluster import MockCluster
from bridge.devtools.sandbox import Sandbox
from tests.support import TOKEN, TestKafka, drill_rows_file, drill_table


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaCluster]:
    """One real KRaft broker per test process (xdist worker), stopped at the end."""
    with KafkaCluster(nodes=1) as broker:
        yield broker


@pytest.fixture
def cluster(kafka_broker: KafkaCluster) -> TestKafka:
    """The real broker, with this test's own topic names."""
    return TestKafka(kafka_broker)


@pytest.fixture
def mock_cluster() -> Iterator[TestKafka]:
    """librdkafka's mock cluster, for faults a real broker cannot stage (request-level
    errors); each use says why."""
    with MockCluster() as mock:
        yield TestKafka(mock)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(token=TOKEN, rate=0) as server:
        yield server


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controlling process, not an xdist worker
        drill_rows_file().unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if hasattr(terminalreporter.config, "workerinput"):  # a worker must not take the controller's rows
        return
    rows_file = drill_rows_file()
    if rows_file.exists():
        rows = [tuple(json.loads(line)) for line in rows_file.read_text().splitlines()]
        terminalreporter.section("drills")
        terminalreporter.write_line(drill_table(rows))
        rows_file.unlink()
