"""Intilery goes away in three ways in a row: it refuses connections, then
answers 503, then answers too slowly (client time-outs); then it recovers.
Nothing dead-lettered, nothing lost, no rebalance, memory bounded, and delivery
resumes within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from bridge.runtime.health import OUTAGE_AFTER_S
from bridge.runtime.worker import FETCH_BATCH
from tests.drills.support import (
    DrillBridge,
    assert_no_rebalance,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    ready,
    report,
    rss_mb,
)
from tests.support import TestKafka, accepted, log_events, wait_for

TIMEOUT_S = 1.0
MAX_IN_FLIGHT = 16


@pytest.mark.parametrize(
    ("records", "outage_s"),
    [pytest.param(300, 6, id="short"), pytest.param(3000, 60, id="long", marks=pytest.mark.slow)],
)
def test_outage_then_recovery(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    outage_s: float,
) -> None:
    produce_stream(drill_cluster, records // 3)
    max_buffered = records // 6
    config = drill_config(drill_cluster, sandbox, "outage", max_buffered_records=max_buffered)
    config["intilery"]["timeout_s"] = TIMEOUT_S
    config["delivery"]["max_in_flight"] = MAX_IN_FLIGHT
    log_path = tmp_path / "bridge.log"
    phase_s = outage_s / 3
    with drill_bridge(config, log_path) as process:
        wait_for(lambda: len(accepted(sandbox)) >= records // 6, 60, "first deliveries")
        rss_before = rss_mb(process.pid)
        sandbox.refuse_connections()
        produce_stream(drill_cluster, records - records // 3, start=records // 3)
        time.sleep(phase_s)
        rss_peak = rss_mb(process.pid)
        sandbox.accept_connections()
        sandbox.state.set_faults({"status": 503})
        time.sleep(phase_s)
        rss_peak = max(rss_peak, rss_mb(process.pid))
        not_ready = not ready(log_path)
        sandbox.state.set_faults({"status": None, "count": 0, "latency_ms": TIMEOUT_S * 1500})
        time.sleep(phase_s)
        rss_peak = max(rss_peak, rss_mb(process.pid))
        during = len(accepted(sandbox))
        sandbox.state.set_faults({"latency_ms": 0})
        recovered_at = time.monotonic()
        wait_for(lambda: len(accepted(sandbox)) > during, 30, "delivery to resume")
        resume_s = time.monotonic() - recovered_at
        wait_for(lambda: len(delivered_seqs(sandbox)) >= records, 120, "all delivered")
        drain_s = time.monotonic() - recovered_at
    outcome = check_stream(drill_cluster, sandbox, "outage", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    assert during < records, "the outage must have held deliveries back"
    events = log_events(log_path)
    reasons = " ".join(e["reason"] for e in events if e["event"] == "command_retry")
    assert "connection failed" in reasons and "503" in reasons and "timed out" in reasons
    # The backlog is held at the buffer limit: the consumer pauses, then resumes after recovery.
    kinds = [e["event"] for e in events]
    assert "consumer_paused" in kinds and "consumer_resumed" in kinds[kinds.index("consumer_paused") :]
    summaries = [e for e in events if e["event"] == "bridge_summary"]
    assert summaries and max(e["unfinished"] for e in summaries) <= max_buffered + FETCH_BATCH
    assert_no_rebalance(kinds)
    # Only a request Intilery took but answered too late can be sent twice; after a time-out
    # the next requests wait longer, so each stretch costs at most one round in flight.
    assert outcome.duplicated <= reasons.count("timed out")
    stretches = kinds.count("intilery_timeout_stretched")
    assert stretches >= 1 and outcome.duplicated <= MAX_IN_FLIGHT * stretches
    assert rss_peak <= rss_before + 50, f"memory grew from {rss_before:.0f} MB to {rss_peak:.0f} MB"
    if 2 * outage_s / 3 > OUTAGE_AFTER_S:
        assert not_ready, "readiness must be false once every request has failed for a while"
    report(
        f"2 Intilery outage {outage_s:g} s (refused, 503, time-outs)",
        outcome,
        resume_s,
        f"drained in {drain_s:.1f} s; RSS {rss_before:.0f}->{rss_peak:.0f} MB; no rebalance; "
        f"duplicates from requests answered after their time-out ({stretches} timeout stretches)",
    )
