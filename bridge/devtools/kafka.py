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
import base64
import contextlib
import ctypes
import fcntl
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "kafka" / "pom.xml"
CACHE = ROOT / ".cache"
START_TIMEOUT_S = 90
_PR_SET_PDEATHSIG = 1

# The settings every broker here runs with; docker-compose.yml repeats them (a test checks).
BROKER_SETTINGS: dict[str, str] = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "10",
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
    # KIP-848 groups: a dead member is forgotten after 6 s, as the classic tests configure.
    "group.consumer.min.session.timeout.ms": "6000",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.heartbeat.interval.ms": "1000",
    "num.network.threads": "2",
    "num.io.threads": "4",
}
# Records are kept whatever their timestamps: tests produce records dated days or weeks
# ago (replay and start_from by time), which the default 7-day retention would delete
# once its first check runs, 5 minutes into a test run (an empty replay window, found so).
KEEP_RECORDS = {"log.retention.ms": "-1"}
# For clusters whose writes a test refuses (:meth:`KafkaCluster.refuse_writes`).
AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}
_REPLICATION_KEYS = (
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "share.coordinator.state.topic.replication.factor",
)
_MIN_ISR_KEYS = (
    "min.insync.replicas",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.min.isr",
)
# A small heap; the client compiler only, which halves the start-up CPU on two cores.
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def kafka_version() -> str:
    """The broker version ``kafka/pom.xml`` declares."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not found:
        raise RuntimeError(f"{POM}: no <kafka.version> property")
    return found.group(1)


def fetch(version: str | None = None) -> Path:
    """The folder of the broker's jars, copied from Maven Central on first use."""
    version = version or kafka_version()
    libs = CACHE / "kafka" / version / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:  # test workers fetch once between them
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (libs / f"kafka_2.13-{version}.jar").exists():
            _copy_dependencies(version, libs)
    return libs


def _copy_dependencies(version: str, libs: Path) -> None:
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}", f"-Dmaven.repo.local={CACHE / 'm2'}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"fetching Kafka {version} failed:\n{result.stdout}{result.stderr}")
    staging.rename(libs)


def cluster_id() -> str:
    """A random Kafka cluster id (base64 of a UUID) that does not start with "-", which
    the storage tool would read as an option (Kafka's own ``Uuid.randomUuid`` avoids it too)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not found.startswith("-"):
            return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Run in the child before exec: the kernel kills the broker when its parent dies,
    and no signal the parent holds back (``main``) stays blocked for the broker."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"


@dataclass
class KafkaCluster:
    """One or three KRaft nodes (each broker and controller) on loopback."""

    nodes: int = 1
    version: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    members: list[Node] = field(init=False, default_factory=list)
    started_in_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.nodes not in (1, 3):
            raise ValueError("a cluster here has 1 or 3 nodes")
        self._admin: AdminClient | None = None
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
        formats = [self._format(node) for node in self.members]
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
        node.process = self._java(node, "kafka.Kafka", str(node.directory / "server.properties"))
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

    # --- what tests ask of it ---

    def admin(self) -> AdminClient:
        """One admin client for the cluster's life (a dropped client cancels its requests)."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        return self._admin

    def create_topic(self, name: str, partitions: int = 1, wait: bool = True, **config: str) -> None:
        """Create a topic and (``wait``) wait until every partition has a leader."""
        replication = min(3, self.nodes)
        futures = self.admin().create_topics([NewTopic(name, partitions, replication, config=config)])
        futures[name].result(timeout=30)
        if wait:
            self.wait_for(
                lambda: all(self.leader(name, p) >= 0 for p in range(partitions)), f"leaders of {name}"
            )

    def refuse_writes(self, topic: str, refuse: bool = True) -> None:
        """Deny (or allow again) every client's writes to a topic: the broker then answers
        TOPIC_AUTHORIZATION_FAILED. Needs a cluster started with ``AUTHORIZER``."""
        fields = (
            ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
            AclOperation.WRITE, AclPermissionType.DENY,
        )  # fmt: skip
        admin = self.admin()
        if refuse:
            [future] = admin.create_acls([AclBinding(*fields)]).values()
        else:
            [future] = admin.delete_acls([AclBindingFilter(*fields)]).values()
        future.result(timeout=30)

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading a partition (-1 while there is none)."""
        metadata = self.admin().list_topics(topic, timeout=10).topics[topic]
        found = metadata.partitions.get(partition)
        return -1 if found is None or metadata.error is not None else int(found.leader)

    def coordinator(self, group: str) -> int:
        """The node id coordinating a consumer group."""
        [future] = self.admin().describe_consumer_groups([group]).values()
        return int(future.result(timeout=10).coordinator.id)

    def wait_for(self, predicate: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if predicate():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")

    # --- internals ---

    def _node(self, node_id: int) -> Node:
        return self.members[node_id - 1]

    def _check_alive(self) -> None:
        for node in self.members:
            if node.process is not None and node.process.poll() is not None:
                tail = node.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kafka node {node.node_id} exited ({node.process.returncode}):\n{tail}")

    def _properties(self, node: Node) -> dict[str, str]:
        controllers = [f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members]
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            **{key: str(self.nodes) for key in _REPLICATION_KEYS},
            **{key: str(min(2, self.nodes)) for key in _MIN_ISR_KEYS},
            **BROKER_SETTINGS,
            **KEEP_RECORDS,
            **self.settings,
        }
        if self.nodes == 1:  # a dynamic quorum of one, formatted --standalone
            properties["controller.quorum.bootstrap.servers"] = controllers[0].split("@")[1]
        else:  # a static quorum of three
            properties["controller.quorum.voters"] = ",".join(controllers)
        return properties

    def _format(self, node: Node) -> subprocess.Popen[bytes]:
        node.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self._properties(node).items()]
        (node.directory / "server.properties").write_text("\n".join(lines) + "\n")
        (node.directory / "log4j2.yaml").write_text(LOG4J2)
        standalone = ["--standalone"] if self.nodes == 1 else []
        return self._java(
            node, "kafka.tools.StorageTool", "format", "-t", self._cluster_id,
            "-c", str(node.directory / "server.properties"), *standalone,
        )  # fmt: skip

    def _java(self, node: Node, main: str, *args: str) -> subprocess.Popen[bytes]:
        log4j = f"-Dlog4j2.configurationFile={node.directory / 'log4j2.yaml'}"
        command = ["java", *JVM_OPTIONS, log4j, "-cp", f"{self._libs}/*", main, *args]
        with open(node.log_path, "ab") as log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )  # fmt: skip


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
