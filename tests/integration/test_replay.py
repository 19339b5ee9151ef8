"""Replay against a real broker: offset windows with --dry-run and for real,
by time (--from/--to and source.start_from, on records with chosen timestamps),
the live group's offsets untouched, an interrupted replay resuming, and the
stale-event guard applied unless --ignore-max-age."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    committed_and_ends,
    produce_events,
    read_all,
    sms_event,
    start_bridge,
    wait_for,
    write_config,
)

ROOT = Path(__file__).parents[2]


def seed(cluster: TestKafka, count: int = 40, hours_ago: float = 0) -> dict[tuple[int, int], int]:
    """Produce sms events; gives (partition, offset) → seq."""
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    occurred = time.time() - hours_ago * 3600
    produce_events(
        cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 5, occurred) for seq in range(count))
    )
    return {
        (m.partition(), m.offset()): json.loads(m.value())["seq"]
        for m in read_all(cluster.bootstrap_servers, cluster.topic, 2)
    }


def replay(config: Path, topic: str, *args: str, wait: bool = True) -> Any:
    command = [sys.executable, "-m", "bridge", "replay", "--config", str(config), "--topic", topic, *args]
    if not wait:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bridge_env(), cwd=ROOT
        )
    return subprocess.run(command, capture_output=True, text=True, env=bridge_env(), timeout=120, cwd=ROOT)


def test_replay_windows_dry_run_and_real(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    seqs = seed(cluster)
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "live"))
    assert start_bridge(config, tmp_path / "live.log", "--until-caught-up").wait(timeout=60) == 0
    live_before = committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2)
    assert [c for c, _ in live_before] == [e for _, e in live_before]
    sandbox.state.clear()

    dry = replay(config, cluster.topic, "--from-offset", "0:2,1:0", "--to-offset", "0:5,1:1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    bodies = [json.loads(line)["body"] for line in dry.stdout.splitlines()]
    expected = sorted(seqs[(0, o)] for o in range(2, 6)) + sorted(seqs[(1, o)] for o in range(0, 2))
    assert sorted(b["seq"] for b in bodies) == sorted(expected)
    assert all(b["event"] == "send_sms" for b in bodies) and accepted(sandbox) == []
    summary = f"replay --dry-run of {cluster.topic}: 6 of 6 records in the window read, 6 commands, "
    assert summary + "0 would be dead-lettered" in dry.stderr

    # Nonsense is refused in one line, never clamped or read to the end.
    for nonsense, said in (
        (("--from-offset", "0:-5"), "--from-offset: partitions and offsets are 0 or more"),
        (("--from-beginning", "--to-offset", "1:1"), "--to-offset: no end for partition 0"),
        (("--from-offset", "0:5", "--to-offset", "0:3"), "--to-offset 0:3: before its start, 5"),
        (("--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z"), "later than --to"),
    ):
        refused = replay(config, cluster.topic, *nonsense, "--dry-run")
        assert refused.returncode == 2 and said in refused.stderr and "Traceback" not in refused.stderr
        assert refused.stdout == ""

    real = replay(config, cluster.topic, "--from-offset", "0:2,1:0", "--to-offset", "0:5,1:1")
    assert real.returncode == 0, real.stderr
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == sorted(expected)
    assert f"replay of {cluster.topic}: 6 of 6 records read; 6 delivered" in real.stderr
    assert committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2) == live_before

    sandbox.state.clear()
    everything = replay(config, cluster.topic, "--from-beginning")
    assert everything.returncode == 0, everything.stderr
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(40))
    assert committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2) == live_before


def test_interrupted_replay_resumes(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    seed(cluster)
    sandbox.state.set_faults({"latency_ms": 100})
    config_data = base_config(cluster, sandbox.url, "live", max_in_flight=2)
    config = write_config(tmp_path, config_data)
    first = replay(config, cluster.topic, "--from-beginning", "--group", "replay-1", wait=False)
    wait_for(lambda: len(accepted(sandbox)) >= 8, 60, "part of the replay")
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=30)
    assert first.returncode == 0
    done_first = len(accepted(sandbox))
    assert done_first < 40
    resumed = [c for c, _ in committed_and_ends(cluster.bootstrap_servers, "replay-1", cluster.topic, 2)]
    assert sum(max(0, c) for c in resumed) >= 8, "progress recorded in the replay group"
    sandbox.state.set_faults({"latency_ms": 0})
    second = replay(config, cluster.topic, "--from-beginning", "--group", "replay-1")
    assert second.returncode == 0, second.stderr
    seqs = [r["body"]["seq"] for r in accepted(sandbox)]
    assert sorted(set(seqs)) == list(range(40)), "nothing lost"
    assert len(seqs) - done_first < 40, "the second run resumed instead of starting over"
    live = committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2)
    assert [committed for committed, _ in live] == [-1001, -1001], "the live group was never touched"


def test_replay_applies_max_age_unless_told(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    seed(cluster, count=10, hours_ago=3)
    config_data = base_config(cluster, sandbox.url, "live")
    config_data["rules"][0]["max_age"] = "2h"
    config = write_config(tmp_path, config_data)
    guarded = replay(config, cluster.topic, "--from-beginning")
    assert guarded.returncode == 0, guarded.stderr
    assert accepted(sandbox) == [] and "10 stale" in guarded.stderr
    forced = replay(config, cluster.topic, "--from-beginning", "--ignore-max-age")
    assert forced.returncode == 0, forced.stderr
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(10))


def test_replay_refuses_the_live_group(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    seed(cluster, count=1)
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "live"))
    result = replay(config, cluster.topic, "--from-beginning", "--group", "live")
    assert result.returncode == 2 and "that is the live group" in result.stderr


BASE = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def seed_timed(cluster: TestKafka, count: int = 40) -> None:
    """Record ``seq`` carries the timestamp BASE + seq seconds, over two partitions."""
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    times = (int((BASE + timedelta(seconds=seq)).timestamp() * 1000) for seq in range(count))
    events = (sms_event(seq, 5) for seq in range(count))
    produce_events(cluster.bootstrap_servers, cluster.topic, events, times)


def iso(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_replay_by_time_delivers_exactly_the_window(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    seed_timed(cluster)
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "live"))
    assert start_bridge(config, tmp_path / "live.log", "--until-caught-up").wait(timeout=60) == 0
    live_before = committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2)
    sandbox.state.clear()
    result = replay(config, cluster.topic, "--from", iso(10), "--to", iso(19))
    assert result.returncode == 0, result.stderr
    sent = sorted(r["body"]["seq"] for r in accepted(sandbox))
    assert sent == list(range(10, 20)), result.stderr  # --to is inclusive
    assert committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2) == live_before


def test_start_from_a_time_starts_a_new_group_there(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    seed_timed(cluster)
    config = base_config(cluster, sandbox.url, cluster.name("fresh"))
    del config["kafka"]["auto.offset.reset"]
    config["source"]["start_from"] = iso(25)
    path = write_config(tmp_path, config)
    assert start_bridge(path, tmp_path / "bridge.log", "--until-caught-up").wait(timeout=60) == 0
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(25, 40))
    ends = committed_and_ends(cluster.bootstrap_servers, cluster.name("fresh"), cluster.topic, 2)
    assert all(committed == end for committed, end in ends)


def test_replay_and_redrive_beside_a_live_bridge_bind_no_port(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The live bridge holds observability.port; replay and redrive on the same host
    serve nothing unless --observability-port asks."""
    seed(cluster, count=5)
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        port = live.getsockname()[1]
        config_data = base_config(cluster, sandbox.url, "live")
        config_data["observability"] = {"host": "127.0.0.1", "port": port}
        config = write_config(tmp_path, config_data)
        replayed = replay(config, cluster.topic, "--from-beginning")
        assert replayed.returncode == 0, replayed.stderr
        assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(5))
        command = [sys.executable, "-m", "bridge", "redrive", "--config", str(config)]
        redriven = subprocess.run(
            command, capture_output=True, text=True, env=bridge_env(), timeout=120, cwd=ROOT
        )
        assert redriven.returncode == 0, redriven.stderr
        asked = replay(config, cluster.topic, "--from-beginning", "--observability-port", str(port))
        assert asked.returncode == 2
        assert (
            f"observability.port: cannot listen on 127.0.0.1:{port}: Address already in use" in asked.stderr
        )


def test_replay_takes_a_share_of_the_account_rate(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Without --rate a replay sends at a tenth of intilery.rate_limit.per_second (the live
    replicas share the rest); --rate sets it. A lower bound on the time taken: only a
    faster pace than asked could make it shorter."""
    seed(cluster, count=40)
    data = base_config(cluster, sandbox.url, "live")
    data["intilery"]["rate_limit"] = {"per_second": 200, "burst": 500}
    config = write_config(tmp_path, data)

    def spread(*args: str) -> float:
        sandbox.state.clear()
        result = replay(config, cluster.topic, "--from-beginning", *args)
        assert result.returncode == 0, result.stderr
        times = sorted(r["at"] for r in accepted(sandbox))
        assert len(times) == 40
        return times[-1] - times[0]

    # 20/s, burst 20 (15 at once, a quarter second kept back): the other 25 take at least 1.25 s
    assert spread() >= 25 / 20 * 0.95
    # 10/s, burst 10 (7.5 saved: 7 at once): the other 32.5 take at least 3.25 s
    paced = spread("--rate", "10")
    assert paced >= 32.5 / 10 * 0.95
    assert spread("--rate", "0") < paced / 2, "0: no limit"
