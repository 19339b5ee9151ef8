"""Intilery refuses the credentials (403) mid-stream, then accepts them again:
nothing is dead-lettered or committed while it lasts, and delivery resumes on
its own."""

from __future__ import annotations

from pathlib import Path

from bridge.sandbox import Sandbox
from bridge.testing.mockcluster import MockCluster
from tests.conftest import (
    accepted,
    base_config,
    committed_and_ends,
    log_events,
    produce_events,
    read_all,
    start_bridge,
    wait_for,
    write_config,
)


def produce(cluster: MockCluster, seqs: range) -> None:
    events = (
        {"type": "booking_viewed", "seq": seq, "customer": {"id": f"C-{seq % 5}"}, "booking": {"id": "B"}}
        for seq in seqs
    )
    produce_events(cluster.bootstrap_servers, "bookings", events)


def test_403_pauses_without_dead_letters_or_commits(
    cluster: MockCluster, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic("bookings", 1)
    cluster.create_topic("bookings.dlq", 1)
    config = base_config(cluster, sandbox.url, "auth", max_buffered_records=20)
    config["delivery"]["retry"]["auth_backoff_ms"] = 300
    log_path = tmp_path / "bridge.log"
    produce(cluster, range(10))
    process = start_bridge(write_config(tmp_path, config), log_path)
    try:
        wait_for(lambda: len(accepted(sandbox)) == 10, 30, "first deliveries")
        wait_for(
            lambda: committed_and_ends(cluster.bootstrap_servers, "auth", "bookings", 1)[0][0] == 10,
            10,
            "first commit",
        )
        sandbox.state.set_faults({"status": 403, "count": 10**9})
        produce(cluster, range(10, 100))
        wait_for(lambda: any(e["event"] == "consumer_paused" for e in log_events(log_path)), 20, "the pause")
        attempts_before = len(sandbox.state.attempts)
        wait_for(lambda: len(sandbox.state.attempts) >= attempts_before + 3, 20, "auth retries")
        assert len(accepted(sandbox)) == 10
        assert committed_and_ends(cluster.bootstrap_servers, "auth", "bookings", 1) == [(10, 100)]
        sandbox.state.set_faults({"status": None, "count": 0})
        wait_for(lambda: len({r["body"]["seq"] for r in accepted(sandbox)}) == 100, 30, "delivery to resume")
        wait_for(
            lambda: committed_and_ends(cluster.bootstrap_servers, "auth", "bookings", 1) == [(100, 100)],
            10,
            "final commit",
        )
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert read_all(cluster.bootstrap_servers, "bookings.dlq") == []
    events = log_events(log_path)
    failures = [e for e in events if e["event"] == "intilery_auth_failed"]
    assert failures and all(e["level"] == "error" and e["status"] == 403 for e in failures)
    # While the credentials were refused, no more than one probe per lane went out per back-off.
    refused = [a for a in sandbox.state.attempts if a["status"] == 403]
    assert len(refused) < 100
