"""Intilery takes seconds per request while a long backlog waits: the consumer
stays in the group (max.poll.interval.ms is never exceeded, as the loop keeps
polling) and throughput is what max_in_flight allows: the sandbox finds
max_in_flight requests open most of the time, and never more."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    DrillBridge,
    assert_no_rebalance,
    check_stream,
    drill_config,
    produce_stream,
    report,
)
from tests.support import TestKafka, accepted, log_events, wait_for

MAX_IN_FLIGHT = 8
POLL_INTERVAL_MS = 6000  # the lowest librdkafka allows beside a 6 s session


@pytest.mark.parametrize(
    ("records", "latency_s"),
    [pytest.param(100, 0.5, id="short"), pytest.param(240, 2.0, id="long", marks=pytest.mark.slow)],
)
def test_slow_intilery_long_backlog(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    latency_s: float,
) -> None:
    produce_stream(drill_cluster, records)
    sandbox.state.set_faults({"latency_ms": latency_s * 1000})
    config = drill_config(drill_cluster, sandbox, "slow", max_in_flight=MAX_IN_FLIGHT)
    config["kafka"]["max.poll.interval.ms"] = POLL_INTERVAL_MS
    config["intilery"]["timeout_s"] = latency_s * 3
    log_path = tmp_path / "bridge.log"
    with drill_bridge(config, log_path):
        wait_for(
            lambda: len(accepted(sandbox)) >= records, records / MAX_IN_FLIGHT * latency_s * 4 + 30, "all"
        )
    outcome = check_stream(drill_cluster, sandbox, "slow", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0 and outcome.duplicated == 0
    kinds = [e["event"] for e in log_events(log_path)]
    assert_no_rebalance(kinds)
    attempts = sandbox.state.attempts
    # Requests the sandbox was answering as each arrived: the bound, and kept busy.
    open_counts = sorted(a["open"] for a in attempts)
    assert open_counts[-1] == MAX_IN_FLIGHT, f"at most {open_counts[-1]} open, never max_in_flight"
    busy = open_counts[len(open_counts) // 2]
    assert busy >= MAX_IN_FLIGHT // 2, f"half the requests found {busy} or fewer open"
    # The long version's backlog must outlast max.poll.interval.ms (the short one's need not):
    # requests one after another in each slot, so that many latencies at the least.
    if latency_s >= 1:
        assert len(attempts) / MAX_IN_FLIGHT * latency_s * 1000 > 2 * POLL_INTERVAL_MS
    arrivals = sorted(a["at"] for a in attempts)
    rate, bound = records / (arrivals[-1] - arrivals[0] + latency_s), MAX_IN_FLIGHT / latency_s
    report(
        f"8 slow Intilery, {latency_s:g} s per request",
        outcome,
        None,
        f"{rate:.1f} rec/s = {rate / bound:.2f} of max_in_flight/latency; {busy} of"
        f" {MAX_IN_FLIGHT} open (median), {open_counts[-1]} at most; no rebalance",
    )
