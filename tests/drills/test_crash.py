"""SIGKILL the bridge mid-stream and restart it: every command arrives at least
once; duplicates are counted and bounded by what can be unfinished or
uncommitted at the moment of the kill."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from bridge.sandbox import Sandbox
from tests.conftest import TestKafka, accepted, start_bridge, wait_for, write_config
from tests.drills.conftest import check_stream, delivered_seqs, drill_config, produce_stream, report

MAX_BUFFERED = 200
FETCH_BATCH = 500  # the pipeline fetches at most this many records past the buffer limit


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
    sandbox.state.set_faults({"latency_ms": 10})  # slow enough that kills land mid-stream
    config = write_config(
        tmp_path, drill_config(drill_cluster, sandbox, "crash", max_buffered_records=MAX_BUFFERED)
    )
    log_path = tmp_path / "bridge.log"
    rng = random.Random(records)
    for kill in range(kills):
        target = records * (kill + rng.uniform(0.3, 0.8)) / (kills + 1)
        process = start_bridge(config, log_path)
        wait_for(lambda t=target: len(accepted(sandbox)) >= t, 90, f"{target:.0f} deliveries")
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert len(delivered_seqs(sandbox)) < records, "the kill must land mid-stream"
    started = time.monotonic()
    final = start_bridge(config, log_path, "--until-caught-up")
    assert final.wait(timeout=180) == 0
    outcome = check_stream(drill_cluster, sandbox, "crash", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    # Per kill, at most the unfinished buffer plus what was finished but not yet committed.
    assert outcome.duplicated <= kills * (MAX_BUFFERED + FETCH_BATCH)
    report(
        f"1 crash: SIGKILL x{kills}",
        outcome,
        time.monotonic() - started,
        f"{outcome.duplicated / kills:.0f} duplicates per kill (bound {MAX_BUFFERED + FETCH_BATCH})",
    )
