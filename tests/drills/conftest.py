"""Drill helpers: a keyed stream of sequence-numbered events, and the checks
every drill ends with (no gaps, offsets at the end, duplicates counted)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.sandbox import Sandbox
from bridge.testing.mockcluster import MockCluster
from tests.conftest import accepted, committed_and_ends, produce_events, read_all, sms_event

PARTITIONS = 3


def produce_stream(cluster: MockCluster, count: int, start: int = 0) -> None:
    produce_events(
        cluster.bootstrap_servers, "bookings", (sms_event(seq, 50) for seq in range(start, start + count))
    )


@dataclass
class Outcome:
    records: int
    lost: int
    duplicated: int
    dead_lettered: int

    def row(self, name: str, recover_s: float | None = None) -> str:
        recover = f"{recover_s:.1f}s" if recover_s is not None else "-"
        return (
            f"drill={name} records={self.records} lost={self.lost} duplicated={self.duplicated} "
            f"dead_lettered={self.dead_lettered} time_to_recover={recover}"
        )


def check_stream(cluster: MockCluster, sandbox: Sandbox, group: str, count: int) -> Outcome:
    """Every record delivered at least once or dead-lettered, offsets at the end."""
    seqs = Counter(r["body"]["seq"] for r in accepted(sandbox))
    dead = read_all(cluster.bootstrap_servers, "bookings.dlq")
    dead_seqs = {json.loads(m.value())["seq"] for m in dead}
    lost = [s for s in range(count) if s not in seqs and s not in dead_seqs]
    for committed, end in committed_and_ends(cluster.bootstrap_servers, group, "bookings", PARTITIONS):
        assert committed == end, f"committed {committed} of {end}"
    return Outcome(count, len(lost), sum(n - 1 for n in seqs.values()), len(dead))


@pytest.fixture
def drill_cluster(cluster: MockCluster) -> MockCluster:
    cluster.create_topic("bookings", PARTITIONS)
    cluster.create_topic("bookings.dlq", 1)
    return cluster


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[drill] {line}")


def drill_config(cluster: MockCluster, sandbox: Sandbox, group: str, **delivery: Any) -> dict[str, Any]:
    from tests.conftest import base_config

    config = base_config(cluster, sandbox.url, group, **delivery)
    config["rules"] = config["rules"][:1]
    return config
