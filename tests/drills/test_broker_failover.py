"""Real broker failures on a three-node KRaft cluster (replication factor 3,
``min.insync.replicas=2``): mid-stream, the leader of a partition is SIGKILLed,
then restarted; then the group coordinator is SIGKILLed, then restarted. Nothing
is lost, commits succeed after each fail-over, and no commit names a partition
the instance does not own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from bridge.sandbox import Sandbox
from bridge.testing.kafka import KafkaCluster
from tests.conftest import TestKafka, committed_and_ends, log_events, start_bridge, wait_for, write_config
from tests.drills.conftest import (
    PARTITIONS,
    check_stream,
    commits_outside_ownership,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
)


@pytest.fixture
def three_nodes() -> Iterator[TestKafka]:
    with KafkaCluster(nodes=3) as cluster:
        kafka = TestKafka(cluster)
        kafka.create_topic(kafka.topic, PARTITIONS)
        kafka.create_topic(kafka.dlq, 1)
        yield kafka


def kill_and_restart(
    cluster: KafkaCluster, node: int, delivered: Callable[[], int], committed: Callable[[], int]
) -> float:
    """SIGKILL ``node``; wait until deliveries go on and the group's committed offsets
    move without it; restart it. Gives the seconds from the kill to deliveries going on."""
    delivered_before, committed_before, killed_at = delivered(), committed(), time.monotonic()
    cluster.kill(node)
    wait_for(lambda: delivered() > delivered_before + 50, 120, f"deliveries after node {node} was killed")
    recovered_s = time.monotonic() - killed_at
    wait_for(lambda: committed() > committed_before, 60, f"a commit accepted after node {node} was killed")
    cluster.start_node(node)
    return recovered_s


@pytest.mark.parametrize(
    "records", [pytest.param(2000, id="short"), pytest.param(9000, id="long", marks=pytest.mark.slow)]
)
def test_leader_and_coordinator_killed(
    three_nodes: TestKafka, sandbox: Sandbox, tmp_path: Path, records: int
) -> None:
    cluster = three_nodes.backend
    assert isinstance(cluster, KafkaCluster)
    produce_stream(three_nodes, records)
    sandbox.state.set_faults({"latency_ms": 20})  # ~200 records/s: the stream outlasts the fail-overs
    config = drill_config(three_nodes, sandbox, "failover", max_in_flight=4, max_buffered_records=100)
    config["log"]["level"] = "debug"  # offsets_commit lines
    group = config["kafka"]["group.id"]
    log_path = tmp_path / "bridge.log"
    process = start_bridge(write_config(tmp_path, config), log_path)

    def delivered() -> int:
        return len(delivered_seqs(sandbox))

    def committed() -> int:
        """The sum of the group's committed offsets (-1 while the coordinator is moving)."""
        try:
            offsets = committed_and_ends(cluster.bootstrap_servers, group, three_nodes.topic, PARTITIONS)
        except KafkaException:
            return -1
        return sum(max(c, 0) for c, _ in offsets)

    try:
        wait_for(lambda: delivered() >= records // 6, 60, "first deliveries")
        leader = cluster.leader(three_nodes.topic, 0)
        leader_s = kill_and_restart(cluster, leader, delivered, committed)
        coordinator = cluster.coordinator(group)
        coordinator_s = kill_and_restart(cluster, coordinator, delivered, committed)
        assert delivered() < records, "the kills must land mid-stream"
        wait_for(lambda: delivered() >= records, 180, "all delivered")
        time.sleep(0.6)  # two commit intervals
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    outcome = check_stream(three_nodes, sandbox, "failover", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    assert not commits_outside_ownership(log_events(log_path))
    report(
        "5b broker failover (3 nodes): partition leader, then group coordinator SIGKILLed",
        outcome,
        max(leader_s, coordinator_s),
        f"leader node {leader}: {leader_s:.1f} s, coordinator node {coordinator}: {coordinator_s:.1f} s;"
        " commits after each; none outside ownership",
    )
