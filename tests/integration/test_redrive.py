"""Redrive: after a rule is fixed, the dead-letter topic runs through the
current rules as if from its original topics; what fails again goes back with
its new reason; progress is kept so a second run reads only what is new."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bridge.sandbox import Sandbox
from tests.conftest import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    read_all,
    start_bridge,
    write_config,
)

ROOT = Path(__file__).parents[2]


def redrive(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "redrive", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=bridge_env(),
        timeout=120,
        cwd=ROOT,
    )


def test_redrive_after_a_fixed_rule(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(12):
        customer = {"id": f"C-{seq}"} if seq != 7 else {}  # seq 7 cannot be fixed by the new rule
        event = {"type": "letter", "seq": seq, "customer": customer}
        producer.produce(
            cluster.topic, key=f"C-{seq}", value=json.dumps(event).encode(), headers=[("trace", b"t")]
        )
    producer.flush()
    broken = base_config(cluster, sandbox.url, "live")
    broken["rules"] = [
        {
            "name": "letters",
            "when": "type == 'letter'",
            "emit": {
                "event": "send_print",
                "userId": "{{ customerId }}",
                "assetId": "A-PRINT",
                "seq": "{{ seq }}",
                "source": "{{ _kafka.topic }}",
                "trace": "{{ _kafka.headers.trace }}",
            },
        }
    ]
    (tmp_path / "v1").mkdir()
    v1 = write_config(tmp_path / "v1", broken)
    assert start_bridge(v1, tmp_path / "live.log", "--until-caught-up").wait(timeout=60) == 0
    assert accepted(sandbox) == []
    dead = read_all(cluster.bootstrap_servers, cluster.dlq)
    assert len(dead) == 12

    fixed = json.loads(json.dumps(broken))
    fixed["rules"][0]["emit"]["userId"] = "{{ customer.id }}"
    (tmp_path / "v2").mkdir()
    v2 = write_config(tmp_path / "v2", fixed)

    dry = redrive(v2, "--dry-run")
    assert dry.returncode == 1 and accepted(sandbox) == []  # 1: one record still fails
    assert len(dry.stdout.splitlines()) == 11 and "userId: required for send_print" in dry.stderr

    result = redrive(v2)
    assert result.returncode == 0, result.stderr
    bodies = sorted((r["body"] for r in accepted(sandbox)), key=lambda b: b["seq"])
    assert [b["seq"] for b in bodies] == [s for s in range(12) if s != 7]
    assert all(b["source"] == cluster.topic and b["trace"] == "t" for b in bodies), (
        "as if from the original topic"
    )
    assert f"redrive of {cluster.dlq}: 12 of 12 records read; 11 delivered, 1 dead-lettered" in result.stderr

    again = read_all(cluster.bootstrap_servers, cluster.dlq)[12:]
    assert len(again) == 1
    headers = {k: v.decode() for k, v in again[0].headers()}
    assert json.loads(again[0].value())["seq"] == 7 and headers["x-bridge-source-topic"] == cluster.topic
    original = next(m for m in dead if json.loads(m.value())["seq"] == 7)
    original_headers = {k: v.decode() for k, v in original.headers()}
    assert headers["x-bridge-source-offset"] == original_headers["x-bridge-source-offset"]
    assert headers["x-bridge-error-reason"] == "userId: required for send_print" and headers["trace"] == "t"
    assert [k for k, _ in again[0].headers()].count("x-bridge-error-reason") == 1

    second = redrive(v2)  # only the record dead-lettered by the first redrive is new
    assert second.returncode == 0, second.stderr
    assert f"redrive of {cluster.dlq}: 1 of 1 records read" in second.stderr
