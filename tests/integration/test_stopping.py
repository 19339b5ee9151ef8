"""A stop a person can read: SIGTERM's last line says what was delivered and dead-lettered
and what the partition's next owner reads again; a second signal ends the grace at once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    TOKEN,
    TestKafka,
    accepted,
    base_config,
    log_events,
    produce_events,
    sms_event,
    start_bridge,
    wait_for,
    write_config,
)


def test_a_second_signal_ends_the_grace_and_the_last_line_counts_what_is_left(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 50) for seq in range(10)))
    config = base_config(cluster, sandbox.url, "stopping", shutdown_grace_s=120)
    config["intilery"]["timeout_s"] = 120
    log_path = tmp_path / "bridge.log"
    process = start_bridge(write_config(tmp_path, config), log_path)
    try:
        wait_for(lambda: len(accepted(sandbox)) == 10, 30, "the first ten delivered")
        sandbox.state.set_faults({"latency_ms": 60_000})  # the next five are answered in a minute
        produce_events(
            cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 50) for seq in range(10, 15))
        )
        wait_for(lambda: len(sandbox.state.attempts) == 15, 30, "the next five on the wire")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "bridge_stopping" in {e["event"] for e in log_events(log_path)}, 20, "stopping")
        assert process.poll() is None  # waiting for the five, up to its 120 s of grace
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0  # not the grace nor the answers: the second signal
    finally:
        process.kill()
        sandbox.state.set_faults({"latency_ms": 0})
    events = log_events(log_path)
    graces = [e["grace"] for e in events if e["event"] == "signal_received"]
    assert graces == ["started", "ended"]
    (stopped,) = [e for e in events if e["event"] == "bridge_stopped"]
    assert stopped["delivered"] == 10 and stopped["dead_lettered"] == 0
    assert stopped["read_again"] == 5 and stopped["to_send"] == 5 and stopped["final_commit"] == "ok"

    # What the line said is left: the next owner sends those five (again: Intilery took them).
    again = start_bridge(write_config(tmp_path, config), tmp_path / "again.log", "--until-caught-up")
    assert again.wait(timeout=60) == 0
    seqs = sorted(int(call["body"]["seq"]) for call in accepted(sandbox))
    assert seqs == sorted([*range(15), *range(10, 15)])


def stopped_while_held(cluster: TestKafka, tmp_path: Path, config: dict[str, Any], held_by: str) -> Path:
    """Five records sent to a bridge whose every request is held back (``held_by`` logged),
    then one SIGTERM: it stops well inside its 120 s grace, sending nothing, and leaves
    the five to the next owner. Gives its configuration's path."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    log_path = tmp_path / "bridge.log"
    config_path = write_config(tmp_path, config)
    process = start_bridge(config_path, log_path)
    try:
        produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 50) for seq in range(5)))
        wait_for(lambda: held_by in {e["event"] for e in log_events(log_path)}, 30, held_by)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # well inside its 120 s of grace, one signal
    finally:
        process.kill()
    (stopped,) = [e for e in log_events(log_path) if e["event"] == "bridge_stopped"]
    assert stopped["delivered"] == 0 and stopped["to_send"] == 5 and stopped["final_commit"] == "ok"
    return config_path


def test_sigterm_while_intilery_refuses_the_credentials_stops_at_once(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With the token refused and nothing in flight it waited out the whole grace: nothing
    could move before a person mends the token. Now it stops without waiting, sending
    nothing, and leaves the records to the next owner."""
    config = base_config(cluster, sandbox.url, "stopping-refused", shutdown_grace_s=120)
    config["delivery"]["retry"]["auth_backoff_ms"] = 120_000  # no probe inside the test
    sandbox.state.token = "revoked"
    try:
        stopped_while_held(cluster, tmp_path, config, "intilery_auth_failed")
    finally:
        sandbox.state.token = TOKEN
    assert accepted(sandbox) == []


def test_sigterm_while_intilery_holds_every_request_back_stops_at_once(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A 429 asking for two minutes held the stop for the whole grace with nothing on the
    wire. The grace is for answers: with none awaited, it stops at once, sending nothing
    more, and the next owner sends the records."""
    config = base_config(cluster, sandbox.url, "stopping-held", shutdown_grace_s=120)
    sandbox.state.set_faults({"status": 429, "retry_after": 120})
    try:
        config_path = stopped_while_held(cluster, tmp_path, config, "command_retry")
    finally:
        sandbox.state.set_faults({"status": None, "count": 0, "retry_after": None})
    assert accepted(sandbox) == []
    again = start_bridge(config_path, tmp_path / "again.log", "--until-caught-up")
    assert again.wait(timeout=60) == 0
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(5))
