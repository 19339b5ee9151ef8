"""One KRaft node of :class:`~bridge.devtools.kafka.KafkaCluster`: the broker's jars
(fetched from Maven Central once), its settings, its files and its JVM process."""

from __future__ import annotations

import base64
import ctypes
import fcntl
import re
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}",
        f"-Dmaven.repo.local={CACHE / 'm2'}",
    ]
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

    def properties(self, members: list[Node], settings: Mapping[str, str]) -> dict[str, str]:
        """Its ``server.properties``: one node of ``members``, replication as their number allows."""
        controllers = [f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in members]
        nodes = len(members)
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.directory / "data"),
            **{key: str(nodes) for key in _REPLICATION_KEYS},
            **{key: str(min(2, nodes)) for key in _MIN_ISR_KEYS},
            **BROKER_SETTINGS,
            **KEEP_RECORDS,
            **settings,
        }
        if nodes == 1:  # a dynamic quorum of one, formatted --standalone
            properties["controller.quorum.bootstrap.servers"] = controllers[0].split("@")[1]
        else:  # a static quorum of three
            properties["controller.quorum.voters"] = ",".join(controllers)
        return properties

    def format(
        self, libs: Path, cluster: str, properties: dict[str, str], standalone: bool
    ) -> subprocess.Popen[bytes]:
        """Write its files and format its storage (the process to wait for)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in properties.items()]
        (self.directory / "server.properties").write_text("\n".join(lines) + "\n")
        (self.directory / "log4j2.yaml").write_text(LOG4J2)
        return self.java(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster,
            "-c",
            str(self.directory / "server.properties"),
            *(["--standalone"] if standalone else []),
        )

    def java(self, libs: Path, main: str, *args: str) -> subprocess.Popen[bytes]:
        log4j = f"-Dlog4j2.configurationFile={self.directory / 'log4j2.yaml'}"
        command = ["java", *JVM_OPTIONS, log4j, "-cp", f"{libs}/*", main, *args]
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
