"""Once per customer whatever the producers do, on the real broker: every booking's event
produced three times (twice with its key, once on the other partition), read by two
replicas sharing a real Redis, then once more after a restart, then a replay of the
whole topic: exactly one SMS per booking. Without Redis, with an audit topic, the
process' own ledger is rebuilt at start-up, so copies after a restart are still caught."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaException

from bridge.devtools.sandbox import Sandbox
from tests.redisserver import RedisServer
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    committed_and_ends,
    log_events,
    sms_event,
    start_bridge,
    wait_for,
    write_config,
)

BOOKINGS = 20


def produce_copies(cluster: TestKafka, copies: list[int], count: int = BOOKINGS) -> None:
    """The event of each of ``count`` bookings once per entry of ``copies``, on that partition
    offset from its own (0: its key's partition; 1: the other one)."""
    producer = CheckedProducer(cluster.bootstrap_servers)
    for n in range(count):
        event = {**sms_event(n, 5), "booking": {"id": f"B-{n}", "value": 1}}
        for shift in copies:
            producer.produce(
                cluster.topic, key=f"B-{n}", value=json.dumps(event).encode(), partition=(n + shift) % 2
            )
    producer.flush()


def once_config(cluster: TestKafka, sandbox: Sandbox, group: str, **delivery: Any) -> dict[str, Any]:
    config = base_config(cluster, sandbox.url, group, **delivery)
    config["rules"][0]["dedupe"] = {"key": "{{ booking.id }}", "window": "1h"}
    return config


def caught_up(cluster: TestKafka, group: str) -> bool:
    """Every partition committed to its end (False while the group's coordinator moves)."""
    try:
        committed = committed_and_ends(cluster.bootstrap_servers, group, cluster.topic, 2)
    except KafkaException:  # NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS on a new group
        return False
    return all(offset == end for offset, end in committed)


def sms_per_booking(sandbox: Sandbox) -> Counter[str]:
    return Counter(
        call["body"]["bookingId"] for call in accepted(sandbox) if call["body"]["event"] == "send_sms"
    )


def test_two_replicas_a_restart_and_a_replay_send_each_booking_once(
    cluster: TestKafka, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    group = cluster.name("once")
    state = {"redis": {"url": redis_server.url, "key_prefix": cluster.name("state")}}
    config = write_config(tmp_path, once_config(cluster, sandbox, group, state=state))
    produce_copies(cluster, [0, 0, 1])
    replicas = [start_bridge(config, tmp_path / f"replica-{n}.log") for n in range(2)]
    try:
        wait_for(lambda: caught_up(cluster, group), 90, "both replicas through every copy", alive=replicas)
    finally:
        for process in replicas:
            process.terminate()
        for process in replicas:
            assert process.wait(timeout=30) == 0
    produce_copies(cluster, [0])  # once more, after the restart
    assert start_bridge(config, tmp_path / "restart.log", "--until-caught-up").wait(timeout=90) == 0
    replay = [sys.executable, "-m", "bridge", "replay", "--config", str(config), "--topic", cluster.topic]
    result = subprocess.run(
        [*replay, "--from-beginning"], capture_output=True, text=True, env=bridge_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr

    assert sms_per_booking(sandbox) == {f"B-{n}": 1 for n in range(BOOKINGS)}
    logs = [e for path in tmp_path.glob("*.log") for e in log_events(path)]
    deduplicated = [e for e in logs if e["event"] == "command_deduplicated"]
    assert len(deduplicated) == BOOKINGS * 3  # two copies at first, one after the restart
    assert all(e["first_eventId"] for e in deduplicated)
    assert "dedupe_state_local" not in {e["event"] for e in logs}


def test_without_redis_the_ledger_is_rebuilt_from_the_audit_topic(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(audit_topic, 1)
    group = cluster.name("local")
    config = write_config(tmp_path, once_config(cluster, sandbox, group, audit_topic=audit_topic))
    produce_copies(cluster, [0, 1])
    assert start_bridge(config, tmp_path / "first.log", "--until-caught-up").wait(timeout=90) == 0
    produce_copies(cluster, [1])
    log_path = tmp_path / "second.log"
    assert start_bridge(config, log_path, "--until-caught-up").wait(timeout=90) == 0

    assert sms_per_booking(sandbox) == {f"B-{n}": 1 for n in range(BOOKINGS)}
    events = log_events(log_path)
    [rebuilt] = [e for e in events if e["event"] == "dedupe_ledger_rebuilt"]
    assert rebuilt["kept"] == BOOKINGS and rebuilt["complete"]
    assert "dedupe_state_local" not in {e["event"] for e in events}  # one replica: valid
    assert sum(e["event"] == "command_deduplicated" for e in events) == BOOKINGS
    trace = [sys.executable, "-m", "bridge", "trace", "--config", str(config), "--user", "C-0"]
    told = subprocess.run(trace, capture_output=True, text=True, env=bridge_env(), timeout=60)
    assert told.returncode == 0, told.stderr
    lines = told.stdout.splitlines()
    sent = [line for line in lines if "status 200" in line or "status 202" in line]
    caught = [line for line in lines if "not sent (deduplicated: first eventId " in line]
    # C-0's bookings (one in five): each sent once, its copy caught in each run
    assert len(sent) == BOOKINGS // 5 and len(caught) == 2 * BOOKINGS // 5

    replay = [sys.executable, "-m", "bridge", "replay", "--config", str(config), "--topic", cluster.topic]
    forced = subprocess.run(
        [*replay, "--from-beginning", "--ignore-dedupe"], capture_output=True, text=True, env=bridge_env()
    )
    assert forced.returncode == 0, forced.stderr
    assert sms_per_booking(sandbox) == {f"B-{n}": 1 + 3 for n in range(BOOKINGS)}  # every copy, on purpose


def test_redis_killed_and_restarted_mid_stream_loses_nothing_sends_nothing_twice(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """While Redis is away the commands that need it wait (none sent, none dead-lettered,
    the state gauge 0, readiness saying why); once it is back every booking has its one SMS."""
    redis_server = RedisServer(durable_in=tmp_path)
    redis_server.start()
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    group = cluster.name("redis-away")
    state = {"redis": {"url": redis_server.url}}
    config = write_config(tmp_path, once_config(cluster, sandbox, group, state=state))
    log_path = tmp_path / "bridge.log"
    produce_copies(cluster, [0, 0])
    process = start_bridge(config, log_path)
    try:
        wait_for(lambda: caught_up(cluster, group), 60, "the first copies", alive=[process])
        assert len(sms_per_booking(sandbox)) == BOOKINGS
        redis_server.stop()
        produce_copies(cluster, [0, 1], count=2 * BOOKINGS)  # the first ones' copies, and new ones

        def said() -> bool:
            return "dedupe_state_unavailable" in {e["event"] for e in log_events(log_path)}

        wait_for(said, 30, "the bridge to find Redis away", alive=[process])
        assert sum(sms_per_booking(sandbox).values()) == BOOKINGS, "nothing sent without the state"
        [started] = [e for e in log_events(log_path) if e["event"] == "bridge_started"]
        ready = httpx.get(f"http://127.0.0.1:{started['observability_port']}/readyz", timeout=5)
        assert (
            ready.status_code == 503 and "customer-safety state (dedupe, caps) does not answer" in ready.text
        )
        metrics = httpx.get(f"http://127.0.0.1:{started['observability_port']}/metrics", timeout=5).text
        assert "intilery_bridge_state_up 0.0" in metrics
        redis_server.start()
        wait_for(lambda: caught_up(cluster, group), 90, "every copy once Redis is back", alive=[process])
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
        redis_server.stop()
    assert sms_per_booking(sandbox) == {f"B-{n}": 1 for n in range(2 * BOOKINGS)}
    events = [e["event"] for e in log_events(log_path)]
    assert events.count("dedupe_state_restored") >= 1 and "command_dead_lettered" not in events
