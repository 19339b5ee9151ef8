"""Real broker failures on a three-node KRaft cluster (replication factor 3,
``min.insync.replicas=2``): mid-stream, the leader of a partition is SIGKILLed,
then restarted; then the group coordinator is SIGKILLed, then restarted. Nothing
is lost, commits succeed after each fail-over, and no commit names a partition
the instance does not own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from bridge.devtools.kafka import KafkaCluster
from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    PARTITIONS,
    check_stream,
    commits_outside_ownership,
    delivered_seqs,
    drill_config,
    report,
)
from tests.support import (
    TestKafka,
    committed_and_ends,
    log_events,
    produce_events,
    sms_event,
    start_bridge,
    wait_for,
    write_config,
)


@pytest.fixture
def three_nodes() -> Iterator[TestKafka]:
    with KafkaCluster(nodes=3) as cluster:
        kafka = TestKafka(cluster)
        kafka.create_topic(kafka.topic, PARTITIONS)
        kafka.create_topic(kafka.dlq, 1)
        yield kafka


def kill_and_restart(
    cluster: KafkaCluster, node: int, committed: Callable[[], list[int]], watch: list[int]
) -> float:
    """SIGKILL ``node``; wait until the group's committed offset of every partition in
    ``watch`` has moved on without it; restart it. Gives the seconds that took."""
    before = committed()
    killed_at = time.monotonic()
    cluster.kill(node)
    wait_for(
        lambda: bool(now := committed()) and all(now[p] > before[p] for p in watch),
        120,
        f"commits of partitions {watch} after node {node} was killed",
    )
    recovered_s = time.monotonic() - killed_at
    cluster.start_node(node)
    return recovered_s


class Stream(threading.Thread):
    """Produces sequence-numbered events at a steady rate for the whole drill, so every
    fail-over lands mid-stream however long it takes; at least ``minimum`` of them."""

    def __init__(self, kafka: TestKafka, minimum: int, per_second: float = 100) -> None:
        super().__init__(daemon=True)
        self.kafka = kafka
        self.minimum = minimum
        self.pause = 1 / per_second
        self.stop = threading.Event()
        self.produced = 0

    def events(self) -> Iterator[dict[str, Any]]:
        while not (self.stop.is_set() and self.produced >= self.minimum):
            yield sms_event(self.produced, 50)
            self.produced += 1
            time.sleep(self.pause)

    def run(self) -> None:
        produce_events(self.kafka.bootstrap_servers, self.kafka.topic, self.events())


# Three brokers and two fail-overs take a minute even short: `make drills` only.
@pytest.mark.parametrize("records", [pytest.param(6000, id="long", marks=pytest.mark.slow)])
def test_leader_and_coordinator_killed(
    three_nodes: TestKafka, sandbox: Sandbox, tmp_path: Path, records: int
) -> None:
    cluster = three_nodes.backend
    assert isinstance(cluster, KafkaCluster)
    stream = Stream(three_nodes, records)
    stream.start()
    sandbox.state.set_faults({"latency_ms": 20})  # up to ~200 records/s: the bridge keeps up with the stream
    config = drill_config(three_nodes, sandbox, "failover", max_in_flight=4, max_buffered_records=100)
    config["log"]["level"] = "debug"  # offsets_commit lines
    # librdkafka's session timeout (45 s), as users run it: the controller fences a SIGKILLed
    # broker only after its own broker.session.timeout.ms (9 s), and a 6 s member session
    # would expire while the group coordinator is being moved.
    for key in ("session.timeout.ms", "heartbeat.interval.ms"):
        del config["kafka"][key]
    group = config["kafka"]["group.id"]
    log_path = tmp_path / "bridge.log"
    process = start_bridge(write_config(tmp_path, config), log_path)

    def delivered() -> int:
        return len(delivered_seqs(sandbox))

    def committed() -> list[int]:
        """The group's committed offset per partition (none while the coordinator moves)."""
        try:
            offsets = committed_and_ends(cluster.bootstrap_servers, group, three_nodes.topic, PARTITIONS)
        except KafkaException:
            return []
        return [c for c, _ in offsets]

    try:
        wait_for(lambda: delivered() >= records // 6, 60, "first deliveries")
        wait_for(lambda: min(committed() or [-1]) >= 0, 30, "a commit on every partition")
        coordinator = cluster.coordinator(group)
        leaders = [cluster.leader(three_nodes.topic, p) for p in range(PARTITIONS)]
        leader = next((n for n in leaders if n != coordinator), leaders[0])  # not the coordinator, if it can
        led = [p for p, n in enumerate(leaders) if n == leader]
        leader_s = kill_and_restart(cluster, leader, committed, led)
        coordinator = cluster.coordinator(group)
        coordinator_s = kill_and_restart(cluster, coordinator, committed, list(range(PARTITIONS)))
        stream.stop.set()
        stream.join(timeout=60)
        wait_for(lambda: delivered() >= stream.produced, 180, "all delivered")
    finally:
        stream.stop.set()
        process.terminate()
        assert process.wait(timeout=30) == 0
    outcome = check_stream(three_nodes, sandbox, "failover", stream.produced)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    assert not commits_outside_ownership(log_events(log_path))
    report(
        "5b broker failover: partition leader, then group coordinator SIGKILLed",
        outcome,
        max(leader_s, coordinator_s),
        f"commits move again {leader_s:.1f} s after the leader (node {leader}) dies,"
        f" {coordinator_s:.1f} s after the coordinator (node {coordinator}); none outside ownership",
        broker="Kafka, 3 nodes",
    )
