"""The test broker itself (bridge/testing/kafka.py): it answers, it stops, and it dies
with the process that started it, so a killed test run leaves no JVM behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bridge.testing.kafka import KafkaCluster
from tests.conftest import wait_for

ROOT = Path(__file__).parents[2]
CHILD = """
from bridge.testing.kafka import KafkaCluster
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
