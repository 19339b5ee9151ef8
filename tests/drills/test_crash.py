"""SIGKILL the bridge mid-stream and restart it: every command arrives at least
once; per kill, the commands sent again are at most those in flight at the kill
and those finished in the last commit window (the restarted bridge skips every
other finished record: the commit's map names them)."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    acceptances,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
    resend_bound,
    resends,
)
from tests.support import TestKafka, accepted, start_bridge, wait_for, write_config

MAX_BUFFERED = 200
LATENCY_S = 0.01


@pytest.mark.parametrize(
    ("records", "kills"),
    [pytest.param(1500, 1, id="short"), pytest.param(5000, 5, id="long", marks=pytest.mark.slow)],
)
def test_sigkill_and_restart(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    records: int,
    kills: int,
) -> None:
    produce_stream(drill_cluster, records)
    sandbox.state.set_faults({"latency_ms": LATENCY_S * 1000})  # slow enough that kills land mid-stream
    config = write_config(
        tmp_path, drill_config(drill_cluster, sandbox, "crash", max_buffered_records=MAX_BUFFERED)
    )
    log_path = tmp_path / "bridge.log"
    rng = random.Random(records)
    kills_at: list[float] = []
    for kill in range(kills):
        target = records * (kill + rng.uniform(0.3, 0.8)) / (kills + 1)
        process = start_bridge(config, log_path)
        wait_for(lambda t=target: len(accepted(sandbox)) >= t, 90, f"{target:.0f} deliveries")
        time.sleep(rng.uniform(0, 0.05))
        kills_at.append(time.time())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert len(delivered_seqs(sandbox)) < records, "the kill must land mid-stream"
    started = time.monotonic()
    final = start_bridge(config, log_path, "--until-caught-up")
    assert final.wait(timeout=180) == 0
    outcome = check_stream(drill_cluster, sandbox, "crash", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    times = acceptances(sandbox)
    ends = [*kills_at[1:], float("inf")]
    resent = [resends(times, killed, end) for killed, end in zip(kills_at, ends, strict=True)]
    bounds = [resend_bound(times, killed, LATENCY_S) for killed in kills_at]
    assert sum(resent) == outcome.duplicated  # every duplicate is a resend after a kill
    assert all(r <= b for r, b in zip(resent, bounds, strict=True)), f"resent {resent}, bounds {bounds}"
    report(
        f"1 crash: SIGKILL x{kills}",
        outcome,
        time.monotonic() - started,
        "resent per kill "
        + ", ".join(f"{r} (bound {b})" for r, b in zip(resent, bounds, strict=True))
        + ": in flight at the kill + finished in the last commit window",
    )
