"""Apache Kafka brokers in KRaft mode, run as plain JVM processes on loopback.

The broker is ``org.apache.kafka:kafka_2.13`` from Maven Central, declared in
``kafka/pom.xml`` at the repository root. :func:`fetch` copies it and its run-time
dependencies once into ``.cache/kafka/<version>/libs`` (Maven's downloads stay in
``.cache/m2``, so a fresh machine needs only Java and Maven). :class:`KafkaCluster`
formats and starts one node (``--standalone`` controller quorum, replication
factor 1) or three (a controller quorum of three, replication factor 3,
``min.insync.replicas=2``) on free ports, waits until every broker answers
metadata, and stops them when closed. Each JVM dies with the process that
started it (``PR_SET_PDEATHSIG``), so a test run that is killed leaves no broker.

``python -m bridge.devtools.kafka [--nodes 3]`` runs one until interrupted and
prints its bootstrap servers (``make kafka``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.devtools.kafkaadmin import ClusterAdmin
from bridge.devtools.kafkanode import (
    START_TIMEOUT_S,
    Node,
    cluster_id,
    fetch,
    free_port,
    kafka_version,
)


@dataclass
class KafkaCluster(ClusterAdmin):
    """One or three KRaft nodes (each broker and controller) on loopback; what tests ask of
    it (topics, ACLs, leaders) is :class:`ClusterAdmin`'s."""

    nodes: int = 1
    version: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    members: list[Node] = field(init=False, default_factory=list)
    started_in_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.nodes not in (1, 3):
            raise ValueError("a cluster here has 1 or 3 nodes")
        self._owned_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="kafka-"))
        self._libs = fetch(self.version)
        self._cluster_id = cluster_id()
        self.members = [
            Node(i, free_port(), free_port(), self.workdir / f"node-{i}") for i in range(1, self.nodes + 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.members)

    # --- life cycle ---

    def start(self) -> KafkaCluster:
        """Format and start every node; a node that fails (a port taken since it was
        picked, say) is retried once on new ports. Stops what it started on failure."""
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._start_all()
                break
            except RuntimeError:
                self.close(keep_workdir=True)
                if attempt == 2:
                    raise
                self._new_ports()
        self.started_in_s = time.monotonic() - started
        return self

    def _start_all(self) -> None:
        formats = [
            node.format(
                self._libs, self._cluster_id, node.properties(self.members, self.settings), self.nodes == 1
            )
            for node in self.members
        ]
        for node, formatting in zip(self.members, formats, strict=True):
            if formatting.wait() != 0:
                raise RuntimeError(f"formatting node {node.node_id} failed: {node.log_path.read_text()}")
        for node in self.members:
            self.start_node(node.node_id, wait=False)
        self.wait_until_ready()

    def _new_ports(self) -> None:
        for node in self.members:
            shutil.rmtree(node.directory, ignore_errors=True)
            node.port, node.controller_port = free_port(), free_port()

    def start_node(self, node_id: int, wait: bool = True) -> None:
        """Start (or restart, after :meth:`kill`) one node."""
        node = self._node(node_id)
        node.process = node.java(self._libs, "kafka.Kafka", str(node.directory / "server.properties"))
        if wait:
            self.wait_until_ready()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        node = self._node(node_id)
        if node.process is not None:
            node.process.kill()
            node.process.wait()
            node.process = None

    def close(self, keep_workdir: bool = False) -> None:
        for node in self.members:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.members:
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
            node.process = None
        if self._owned_workdir and self.workdir is not None and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def wait_until_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every running node is listed in metadata (and answers it)."""
        running = {n.node_id for n in self.members if n.process is not None and n.process.poll() is None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                brokers = self.admin().list_topics(timeout=2).brokers
                if running <= set(brokers):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"Kafka did not answer metadata within {timeout:.0f}s; see {self.workdir}")

    # --- internals ---

    def _node(self, node_id: int) -> Node:
        return self.members[node_id - 1]

    def _check_alive(self) -> None:
        for node in self.members:
            if node.process is not None and node.process.poll() is not None:
                tail = node.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kafka node {node.node_id} exited ({node.process.returncode}):\n{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Apache Kafka (KRaft) on loopback until interrupted.")
    parser.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    parser.add_argument("--fetch-only", action="store_true", help="download the broker, then exit")
    args = parser.parse_args()
    if args.fetch_only:
        print(fetch())
        return
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # held until started, then it stops cleanly
    with KafkaCluster(nodes=args.nodes) as cluster:
        print(f"Kafka {kafka_version()} up in {cluster.started_in_s:.1f}s: {cluster.bootstrap_servers}")
        print(f"logs under {cluster.workdir}; Ctrl-C stops it", flush=True)
        signal.sigwait(stop)


if __name__ == "__main__":
    main()
