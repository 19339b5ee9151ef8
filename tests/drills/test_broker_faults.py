"""Request-level broker faults mid-stream: OffsetCommit errors (coordinator
moved, rebalance in progress, coordinator not available), Fetch errors (leader
moved, storage error), and the broker down, then up. Nothing is lost and the
group's offsets reach the end.

This drill runs on librdkafka's mock cluster: a real broker cannot be made to
answer one chosen request with one chosen error code. Real broker failures
(a leader and the group coordinator SIGKILLed) are drilled on a three-node
cluster in ``test_broker_failover.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.devtools.mockcluster import MockCluster
from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    PARTITIONS,
    DrillBridge,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
)
from tests.support import TestKafka, accepted, log_events, wait_for

FETCH, OFFSET_COMMIT = 1, 8  # Kafka API keys
NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
REBALANCE_IN_PROGRESS, KAFKA_STORAGE_ERROR = 27, 56
BROKER = 1


@pytest.mark.parametrize(
    ("records", "down_s"),
    [
        pytest.param(600, 2, id="short", marks=pytest.mark.slow),
        pytest.param(6000, 5, id="long", marks=pytest.mark.slow),
    ],
)
def test_broker_faults(
    mock_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    down_s: float,
) -> None:
    drill_cluster, mock = mock_cluster, mock_cluster.backend
    assert isinstance(mock, MockCluster)
    drill_cluster.create_topic(drill_cluster.topic, PARTITIONS)
    drill_cluster.create_topic(drill_cluster.dlq, 1)
    rest = 4 * records // 5  # the last fifth is produced once the broker is back
    produce_stream(drill_cluster, rest)
    sandbox.state.set_faults({"latency_ms": 20})  # ~200 records/s: the stream goes on while faults land
    config = drill_config(drill_cluster, sandbox, "faults", max_buffered_records=100, max_in_flight=4)
    log_path = tmp_path / "bridge.log"

    def delivered() -> int:
        return len(delivered_seqs(sandbox))

    with drill_bridge(config, log_path):
        wait_for(lambda: delivered() >= records // 5, 60, "first deliveries")
        commits = [NOT_COORDINATOR, REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE] * 3
        mock.push_request_errors(OFFSET_COMMIT, commits)
        wait_for(lambda: delivered() >= 2 * records // 5, 60, "deliveries after commit errors")
        mock.push_request_errors(FETCH, [NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR] * 3)
        wait_for(lambda: delivered() >= 3 * records // 5, 60, "deliveries after fetch errors")
        mock.set_broker_down(BROKER)
        time.sleep(down_s)
        mock.set_broker_up(BROKER)
        up_at = time.monotonic()
        produce_stream(drill_cluster, records - rest, start=rest)
        wait_for(
            lambda: any(r["body"]["seq"] >= rest for r in accepted(sandbox)), 60, "records produced after"
        )
        recover_s = time.monotonic() - up_at
        wait_for(lambda: delivered() >= records, 120, "all delivered")
    outcome = check_stream(drill_cluster, sandbox, "faults", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    events = log_events(log_path)
    failed_commits = [e for e in events if e["event"] == "commit_failed"]
    assert failed_commits, "the injected OffsetCommit errors must have been seen"
    rebalances = sum(1 for e in events if e["event"] == "partitions_assigned") - 1
    report(
        f"5a broker faults: commit and fetch errors, broker down {down_s:g} s",
        outcome,
        recover_s,
        f"{len(failed_commits)} failed commits retried; {rebalances} rebalances",
        broker="librdkafka's mock cluster: only it answers a chosen request with a chosen error",
    )
