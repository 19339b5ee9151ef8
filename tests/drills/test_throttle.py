"""A storm of 429s with ``Retry-After``: no request reaches Intilery before the
moment it asked for, and nothing is lost or dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    DrillBridge,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
)
from tests.support import TestKafka, log_events, wait_for

# Requests already on the wire when the first 429 of a round comes back still
# arrive just after it; anything later than this must wait for Retry-After.
IN_FLIGHT_SLACK_S = 0.3


@pytest.mark.parametrize(
    ("records", "throttled", "retry_after"),
    [pytest.param(300, 40, 1, id="short"), pytest.param(3000, 300, 2, id="long", marks=pytest.mark.slow)],
)
def test_429_storm_honours_retry_after(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    throttled: int,
    retry_after: float,
) -> None:
    produce_stream(drill_cluster, records)
    sandbox.state.set_faults({"status": 429, "count": throttled, "retry_after": retry_after})
    log_path = tmp_path / "bridge.log"
    # Retry-After is honoured up to the longest back-off: here longer than Intilery asks.
    retry = {"initial_backoff_ms": 50, "max_backoff_ms": round(retry_after * 1000) + 500}
    with drill_bridge(drill_config(drill_cluster, sandbox, "throttle", retry=retry), log_path):
        wait_for(lambda: len(delivered_seqs(sandbox)) >= records, 180, "all delivered")
    outcome = check_stream(drill_cluster, sandbox, "throttle", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    attempts = sandbox.state.attempts
    refused = [a["at"] for a in attempts if a["status"] == 429]
    assert len(refused) == throttled
    early = [
        (a["at"] - at)
        for at in refused
        for a in attempts
        if at + IN_FLIGHT_SLACK_S < a["at"] < at + retry_after
    ]
    assert not early, f"{len(early)} requests came before Retry-After ran out: {early[:5]}"
    retries = [e for e in log_events(log_path) if e["event"] == "command_retry"]
    assert retries and all(e["status"] == 429 for e in retries)
    later = ([a["at"] - at for a in attempts if a["at"] > at + IN_FLIGHT_SLACK_S] for at in refused)
    waits = [min(gaps) for gaps in later if gaps]
    first_after = min(a["at"] for a in attempts if a["status"] == 200 and a["at"] > refused[-1])
    report(
        f"3 429 storm, Retry-After {retry_after:g} s",
        outcome,
        first_after - refused[-1],
        f"{throttled} x 429; 0 requests early, shortest wait {min(waits):.2f} s",
    )
