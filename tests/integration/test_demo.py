"""``intilery-bridge demo``: on the embedded mock cluster (what ``make demo`` runs) and
against a real broker named by ``--bootstrap-servers``, twice (the second run finds
the topics and goes on from the group's committed offsets)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import TestKafka

ROOT = Path(__file__).parents[2]


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "demo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)


def accepted_counts(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"Intilery sandbox accepted (\d+) calls", output)]


def test_demo_on_the_embedded_cluster() -> None:
    result = demo()
    assert result.returncode == 0, result.stderr
    assert "embedded Kafka at" in result.stdout
    json_calls, avro_calls = accepted_counts(result.stdout)
    assert json_calls > 0 and avro_calls > 0
    assert "Dead-letter topic bookings.intilery-dlq received 3 records" in result.stdout


def test_demo_against_a_real_broker_twice(cluster: TestKafka) -> None:
    first = demo("--bootstrap-servers", cluster.bootstrap_servers)
    assert first.returncode == 0, first.stderr
    assert f"Kafka at {cluster.bootstrap_servers}" in first.stdout
    second = demo("--bootstrap-servers", cluster.bootstrap_servers)
    assert second.returncode == 0, second.stderr
    # The same samples again: the group reads only the new records, with the same outcome.
    assert accepted_counts(second.stdout) == accepted_counts(first.stdout)
    assert all(n > 0 for n in accepted_counts(first.stdout))
    # Records without a key land on any partition, so compare the totals.
    assert all(c == end for c, end in committed(second.stdout))
    assert sum(end for _, end in committed(second.stdout)) == 2 * sum(
        end for _, end in committed(first.stdout)
    )


def committed(output: str) -> list[tuple[int, int]]:
    """(committed, end) per partition, from the demo's closing lines."""
    return [(int(c), int(e)) for c, e in re.findall(r"committed\s+(\d+) of (\d+)", output)]


def test_demo_from_an_installed_wheel_outside_the_checkout(tmp_path: Path) -> None:
    """The examples and schemas ship inside the package: the wheel, installed apart from
    the checkout (its dependencies from this environment) and run from elsewhere, demos."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(ROOT)]
    built = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("intilery_bridge-*.whl")
    installed = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(installed), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import bridge; print(bridge.__file__)"], cwd=elsewhere, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(installed)), where.stdout  # not the checkout's
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "demo"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    json_calls, avro_calls = accepted_counts(result.stdout)
    assert json_calls > 0 and avro_calls > 0
