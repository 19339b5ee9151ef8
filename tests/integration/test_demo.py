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
from tests.unit.test_docker import sent

ROOT = Path(__file__).parents[2]


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "demo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)


def accepted_counts(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"Intilery sandbox accepted (\d+) calls", output)]


def copies_not_sent(output: str) -> list[int]:
    return [
        int(n) for n in re.findall(r"Copies not sent \(rule abandoned-sms's dedupe[^)]*\): (\d+)", output)
    ]


def test_demo_on_the_embedded_cluster() -> None:
    result = demo()
    assert result.returncode == 0, result.stderr
    assert "embedded Kafka at" in result.stdout
    json_calls, avro_calls = accepted_counts(result.stdout)
    assert json_calls > 0 and avro_calls > 0
    assert "Dead-letter topic bookings.intilery-dlq received 3 records" in result.stdout
    assert copies_not_sent(result.stdout) == [1]  # the producer's retry of booking B-5001
    assert "not sent (deduplicated: first eventId " in result.stdout  # in C-1001's story


def test_demo_against_a_real_broker_twice(cluster: TestKafka) -> None:
    first = demo("--bootstrap-servers", cluster.bootstrap_servers)
    assert first.returncode == 0, first.stderr
    assert f"Kafka at {cluster.bootstrap_servers}" in first.stdout
    second = demo("--bootstrap-servers", cluster.bootstrap_servers)
    assert second.returncode == 0, second.stderr
    # The same samples again: the group reads only the new records, with the same outcome,
    # but for the abandoned-booking SMS the first run sent (B-5001's, B-5003's): copies now,
    # caught by the ledger the second run rebuilt from the audit topic.
    # Each part's lines must be there: an empty match satisfied every assert below.
    counts = accepted_counts(first.stdout)
    assert len(counts) == 2 and all(n > 0 for n in counts), first.stdout  # JSON, then Avro
    assert accepted_counts(second.stdout) == [counts[0] - 2, counts[1]]
    assert copies_not_sent(first.stdout) == [1] and copies_not_sent(second.stdout) == [3]
    # Records without a key land on any partition, so compare the totals.
    assert len(committed(first.stdout)) >= 2 and len(committed(second.stdout)) == len(committed(first.stdout))
    assert all(c == end for c, end in committed(second.stdout))
    assert sum(end for _, end in committed(second.stdout)) == 2 * sum(
        end for _, end in committed(first.stdout)
    )


def committed(output: str) -> list[tuple[int, int]]:
    """(committed, end) per partition, from the demo's closing lines."""
    return [(int(c), int(e)) for c, e in re.findall(r"committed\s+(\d+) of (\d+)", output)]


def install_apart(source: Path, tmp_path: Path) -> dict[str, str]:
    """The package built as a wheel from ``source`` and installed apart from the checkout
    (its dependencies from this environment): the environment that runs it."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(source)]
    built = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("intilery_bridge-*.whl")
    installed = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(installed), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {**os.environ, "PYTHONPATH": str(installed)}


def bridge_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_demo_from_an_installed_wheel_outside_the_checkout(tmp_path: Path) -> None:
    """The examples and schemas ship inside the package: the wheel, installed apart from
    the checkout and run from elsewhere, demos; its closing hint works as printed there
    (it said `map --config examples/bridge.yaml`, which exists only in a checkout)."""
    env = install_apart(ROOT, tmp_path)
    installed = Path(env["PYTHONPATH"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import bridge; print(bridge.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed)), where.stdout  # not the checkout's
    result = bridge_cli(env, elsewhere, "demo")
    assert result.returncode == 0, result.stderr
    json_calls, avro_calls = accepted_counts(result.stdout)
    assert json_calls > 0 and avro_calls > 0
    hint = result.stdout.strip().splitlines()[-1]
    assert "demo --copy-examples my-bridge && cd my-bridge && " in hint, hint

    copied = bridge_cli(env, elsewhere, "demo", "--copy-examples", "my-bridge")
    assert copied.returncode == 0, copied.stderr
    mine = elsewhere / "my-bridge"
    for args in (
        ["map", "--config", "examples/bridge.yaml", "examples/events/bookings.jsonl"],
        ["check", "--config", "examples/bridge-avro.yaml"],
        ["test", "--config", "examples/bridge-avro.yaml", "examples/tests/bridge-avro/bookings.yaml"],
    ):
        ran = bridge_cli({**env, "INTILERY_AUTH_TOKEN": "t"}, mine, *args)
        assert ran.returncode in (0, 1) and "Traceback" not in ran.stderr, (args, ran.stderr)
        assert "cannot read" not in ran.stderr and "no such file" not in ran.stderr.lower(), ran.stderr
    again = bridge_cli(env, elsewhere, "demo", "--copy-examples", "my-bridge")
    assert again.returncode == 2 and "exists already; nothing copied" in again.stderr


def test_the_image_s_package_runs_without_the_kafka_tools(tmp_path: Path) -> None:
    """The image's build context leaves out the Kafka launcher and the mock cluster: the
    package built from that context checks and maps; its demo says in one line what to do."""
    context = tmp_path / "context"
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not relative.startswith((".venv/", ".git/", ".cache/")) and sent(relative):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            (context / relative).write_bytes(path.read_bytes())
    devtools = context / "bridge" / "devtools"
    assert (devtools / "demo.py").exists() and not (devtools / "mockcluster.py").exists()
    assert not any((devtools / tool).exists() for tool in ("kafka.py", "kafkanode.py", "kafkaadmin.py"))
    env = {**install_apart(context, tmp_path), "INTILERY_AUTH_TOKEN": "t"}
    assert bridge_cli(env, tmp_path, "demo", "--copy-examples", "here").returncode == 0
    checked = bridge_cli(env, tmp_path / "here", "check", "--config", "examples/bridge.yaml")
    assert checked.returncode == 0, checked.stderr
    embedded = bridge_cli(env, tmp_path, "demo")
    assert embedded.returncode == 2 and "Traceback" not in embedded.stderr
    assert embedded.stderr.strip().splitlines() == [
        "demo: the embedded Kafka is not in this installation (the container image leaves it out): "
        "give --bootstrap-servers HOST:PORT, or run the demo from pip install"
    ]
