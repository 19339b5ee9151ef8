"""Frequency caps on the real broker, counted in a real Redis: twelve marketing SMS for
one customer under a cap of three send three and dead-letter nine alone (class
``capped``, ``x-bridge-cap``), their records' journeys, the e-mails and a ``caps: false``
rule going on; a redrive within the window leaves them (capped again), and once the cap
is lifted a redrive sends those nine SMS and nothing else of their records."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.devtools.sandbox import Sandbox
from tests.redisserver import RedisServer
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    read_all,
    sms_event,
    start_bridge,
    write_config,
)


def events() -> list[dict[str, Any]]:
    """Customer C-0's: twelve abandoned-booking SMS (the first two with a big basket: a
    journey too), three e-mails, two password resets."""
    sms = [
        {**sms_event(n, 1), "booking": {"id": f"B-{n}", "value": 2000 if n < 2 else 10}} for n in range(12)
    ]
    emails = [{**sms_event(12 + n, 1), "channel": "email"} for n in range(3)]
    resets = [{"type": "password_reset", "seq": 15 + n, "customer": {"id": "C-0"}} for n in range(2)]
    return [*sms, *emails, *resets]


def produced(cluster: TestKafka, partitions: int, keyed: list[tuple[str, dict[str, Any]]]) -> None:
    """The topic (of ``partitions``) and a dead-letter topic, and the events, by key."""
    cluster.create_topic(cluster.topic, partitions)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for key, event in keyed:
        producer.produce(cluster.topic, key=key.encode(), value=json.dumps(event).encode())
    producer.flush()


def capped_config(cluster: TestKafka, sandbox: Sandbox, redis_url: str, cap_max: int) -> dict[str, Any]:
    config = base_config(cluster, sandbox.url, cluster.name("capped"))
    config["delivery"]["state"] = {"redis": {"url": redis_url}}
    config["delivery"]["caps"] = [
        {"name": "marketing-sms", "commands": ["send_sms"], "max": cap_max, "window": "1h"}
    ]
    reset = {"event": "send_sms", "userId": "{{ customer.id }}", "assetId": "ASSET-RESET", "seq": "{{ seq }}"}
    config["rules"].append(
        {"name": "password-reset", "when": "type == 'password_reset'", "caps": False, "emit": reset}
    )
    return config


def by_rule(sandbox: Sandbox) -> Counter[str]:
    names = {"ASSET-SMS": "sms", "ASSET-EMAIL": "email", "ASSET-RESET": "reset"}
    return Counter(
        names.get(call["body"].get("assetId"), call["body"]["event"]) for call in accepted(sandbox)
    )


def redrive(config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge", "redrive", "--config", str(config), "--error-class", "capped"]
    return subprocess.run(command, capture_output=True, text=True, env=bridge_env(), timeout=120)


def test_a_cap_holds_back_the_rest_alone_and_redrive_sends_them_once_lifted(
    cluster: TestKafka, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    produced(cluster, 1, [("C-0", event) for event in events()])
    config = write_config(tmp_path, capped_config(cluster, sandbox, redis_server.url, 3))
    assert start_bridge(config, tmp_path / "run.log", "--until-caught-up").wait(timeout=90) == 0

    assert by_rule(sandbox) == {"sms": 3, "start_journey": 2, "email": 3, "reset": 2}
    letters = read_all(cluster.bootstrap_servers, cluster.dlq)
    headers = [dict(m.headers()) for m in letters]
    assert len(letters) == 9
    assert all(
        h["x-bridge-error-class"] == b"capped" and h["x-bridge-cap"] == b"marketing-sms" for h in headers
    )
    assert all(h["x-bridge-rule"] == b"abandoned-sms" for h in headers)

    again = redrive(config)  # within the window: over the cap again, left where they are
    assert again.returncode == 1, again.stderr
    assert by_rule(sandbox)["sms"] == 3

    lifted = write_config(tmp_path, capped_config(cluster, sandbox, redis_server.url, 100))
    sent = redrive(lifted)
    assert sent.returncode == 0, sent.stderr
    assert by_rule(sandbox) == {"sms": 12, "start_journey": 2, "email": 3, "reset": 2}  # the SMS only


def flood_config(cluster: TestKafka, sandbox: Sandbox, redis_url: str, per_minute: int) -> dict[str, Any]:
    config = base_config(cluster, sandbox.url, cluster.name("flood"))
    config["delivery"]["state"] = {"redis": {"url": redis_url}}
    config["rules"][0]["max_per_minute"] = per_minute
    return config


def test_a_flood_is_held_past_max_per_minute_and_redriven_once_looked_at(
    cluster: TestKafka, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """120 SMS (a rule gone wrong) under max_per_minute 30: 30 sent, the rest dead-lettered
    as held, none lost; redriven with the breaker raised, every one is sent once."""
    produced(cluster, 2, [(f"C-{n}", sms_event(n, 120)) for n in range(120)])
    config = write_config(tmp_path, flood_config(cluster, sandbox, redis_server.url, 30))
    assert start_bridge(config, tmp_path / "run.log", "--until-caught-up").wait(timeout=90) == 0
    assert by_rule(sandbox) == {"sms": 30}
    letters = read_all(cluster.bootstrap_servers, cluster.dlq)
    assert len(letters) == 90 and all(dict(m.headers())["x-bridge-error-class"] == b"held" for m in letters)

    raised = write_config(tmp_path, flood_config(cluster, sandbox, redis_server.url, 1000))
    command = [sys.executable, "-m", "bridge", "redrive", "--config", str(raised), "--error-class", "held"]
    result = subprocess.run(command, capture_output=True, text=True, env=bridge_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    seqs = Counter(int(call["body"]["seq"]) for call in accepted(sandbox))
    assert seqs == {n: 1 for n in range(120)}  # each once: none lost, none twice


def test_a_replay_is_capped_unless_it_ignores_the_caps_on_purpose(
    cluster: TestKafka, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Six SMS under a cap of three: three sent; a replay within the window sends no more
    SMS (the cap is shared with it); ``replay --ignore-caps`` sends all six, uncounted: with
    the cap raised to five, a plain replay finds three in the window and sends two."""
    produced(cluster, 1, [("C-0", sms_event(n, 1)) for n in range(6)])
    config = write_config(tmp_path, capped_config(cluster, sandbox, redis_server.url, 3))
    assert start_bridge(config, tmp_path / "run.log", "--until-caught-up").wait(timeout=90) == 0
    assert by_rule(sandbox)["sms"] == 3

    def replay(cap_max: int, *extra: str) -> int:
        path = write_config(tmp_path, capped_config(cluster, sandbox, redis_server.url, cap_max))
        command = [sys.executable, "-m", "bridge", "replay", "--config", str(path), "--topic", cluster.topic]
        done = subprocess.run(
            [*command, "--from-beginning", *extra],
            capture_output=True,
            text=True,
            env=bridge_env(),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return by_rule(sandbox)["sms"]

    assert replay(3) == 3
    assert replay(3, "--ignore-caps") == 3 + 6
    assert replay(5) == 3 + 6 + 2
