"""Intilery answers 503 for a while, then recovers: nothing dead-lettered, nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.pipeline import FETCH_BATCH
from bridge.sandbox import Sandbox
from bridge.testing.mockcluster import MockCluster
from tests.conftest import accepted, log_events, start_bridge, wait_for, write_config
from tests.drills.conftest import check_stream, drill_config, produce_stream, report


@pytest.mark.parametrize(
    ("records", "outage_s"),
    [pytest.param(300, 4, id="short"), pytest.param(3000, 30, id="long", marks=pytest.mark.slow)],
)
def test_503_outage_then_recovery(
    drill_cluster: MockCluster,
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    records: int,
    outage_s: float,
) -> None:
    produce_stream(drill_cluster, records // 3)
    config = write_config(
        tmp_path, drill_config(drill_cluster, sandbox, "outage", max_buffered_records=records // 6)
    )
    log_path = tmp_path / "bridge.log"
    process = start_bridge(config, log_path)
    try:
        wait_for(lambda: len(accepted(sandbox)) >= records // 6, 60, "first deliveries")
        sandbox.state.set_faults({"status": 503, "count": 10**9})
        produce_stream(drill_cluster, records - records // 3, start=records // 3)
        time.sleep(outage_s)
        during = len(accepted(sandbox))
        sandbox.state.set_faults({"status": None, "count": 0})
        recovered_at = time.monotonic()
        wait_for(lambda: len(accepted(sandbox)) > during, 30, "delivery to resume")
        resume_s = time.monotonic() - recovered_at
        wait_for(lambda: len({r["body"]["seq"] for r in accepted(sandbox)}) >= records, 120, "all delivered")
        drain_s = time.monotonic() - recovered_at
        time.sleep(0.6)  # two commit intervals
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    outcome = check_stream(drill_cluster, sandbox, "outage", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    events = log_events(log_path)
    retries = [e for e in events if e["event"] == "command_retry"]
    assert retries and all(e["status"] == 503 for e in retries)
    assert during < records, "the outage must have held deliveries back"
    # The backlog is held at the buffer limit: the consumer pauses, then resumes after recovery.
    kinds = [e["event"] for e in events]
    assert "consumer_paused" in kinds and "consumer_resumed" in kinds[kinds.index("consumer_paused") :]
    summaries = [e for e in events if e["event"] == "bridge_summary"]
    assert summaries and max(e["unfinished"] for e in summaries) <= records // 6 + FETCH_BATCH
    rebalances = [e for e in events if e["event"] == "partitions_assigned"]
    assert len(rebalances) == 1, "the consumer must not leave the group during the outage"
    report(
        capsys,
        outcome.row(f"intilery-503-outage-{outage_s:g}s", resume_s) + f" backlog_drained_in={drain_s:.1f}s",
    )
