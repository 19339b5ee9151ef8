"""The test broker itself (bridge/devtools/kafka.py): it answers, it stops, it dies with
the process that started it, so a killed test run leaves no JVM behind, and it keeps
records whatever their timestamps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from bridge.devtools.kafka import KafkaCluster
from tests.support import CheckedProducer, wait_for

ROOT = Path(__file__).parents[2]
CHILD = """
from bridge.devtools.kafka import KafkaCluster
cluster = KafkaCluster().start()
print(cluster.members[0].process.pid, flush=True)
input()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "State:\tZ" not in status


def test_broker_dies_with_the_process_that_started_it() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert child.stdout is not None
    broker_pid = int(child.stdout.readline())
    assert alive(broker_pid)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)  # closes its pipes
    wait_for(lambda: not alive(broker_pid), 10, "the orphaned broker to die")


def test_close_stops_every_node_cleanly() -> None:
    cluster = KafkaCluster().start()
    processes = [node.process for node in cluster.members]
    cluster.create_topic("t", 2)
    assert cluster.leader("t", 1) == 1
    workdir = cluster.workdir
    cluster.close()
    # Exited on SIGTERM (a controlled shutdown), not SIGKILLed after the 20 s grace.
    assert all(p is not None and p.returncode not in (None, -signal.SIGKILL) for p in processes)
    assert workdir is not None and not workdir.exists()


def low_watermark_after(cluster: KafkaCluster, seconds: float) -> int:
    """The topic's first kept offset once ``seconds`` have passed (or once it moved)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "watermarks"})
    deadline = time.monotonic() + seconds
    try:
        while True:
            low, _ = consumer.get_watermark_offsets(TopicPartition("old", 0), timeout=10)
            if low > 0 or time.monotonic() > deadline:
                return int(low)
            time.sleep(0.2)
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("settings", "kept"), [({}, True), ({"log.retention.ms": str(7 * 86_400_000)}, False)]
)
def test_records_dated_weeks_ago_are_kept(settings: dict[str, str], kept: bool) -> None:
    """Tests produce records dated weeks ago; with the broker's default retention (7 days,
    the control case) its check deletes them minutes into a run."""
    checks = {"log.initial.task.delay.ms": "0", "log.retention.check.interval.ms": "300"}
    with KafkaCluster(settings={**checks, **settings}) as cluster:
        cluster.create_topic("old", 1)
        month_ago = int((time.time() - 30 * 86_400) * 1000)
        producer = CheckedProducer(cluster.bootstrap_servers)
        producer.produce("old", value=b"x", timestamp=month_ago)
        producer.flush()
        assert (low_watermark_after(cluster, 8) == 0) is kept
