"""Two bridge processes share a group; a third joins mid-stream; one is
SIGKILLed. Nothing is lost, no instance commits for a partition it does not
own, and duplicates stay within what a rebalance can leave unfinished."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bridge.pipeline import FETCH_BATCH
from bridge.sandbox import Sandbox
from tests.conftest import (
    GROUP_PROTOCOLS,
    TestKafka,
    log_events,
    start_bridge,
    wait_for,
    with_protocol,
    write_config,
)
from tests.drills.conftest import (
    check_stream,
    commits_outside_ownership,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
)

PARTITIONS = 6
MAX_BUFFERED = 100


@pytest.mark.parametrize("protocol", GROUP_PROTOCOLS)
@pytest.mark.parametrize(
    "records", [pytest.param(1500, id="short"), pytest.param(6000, id="long", marks=pytest.mark.slow)]
)
def test_join_and_kill_in_a_group(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, records: int, protocol: str
) -> None:
    cluster.create_topic(cluster.topic, PARTITIONS)
    cluster.create_topic(cluster.dlq, 1)
    produce_stream(cluster, records)
    sandbox.state.set_faults({"latency_ms": 20})  # ~200 records/s per instance: the stream outlasts the moves
    config = drill_config(cluster, sandbox, "rebalance", max_in_flight=4, max_buffered_records=MAX_BUFFERED)
    config["kafka"] = with_protocol(config["kafka"], protocol)
    config["log"]["level"] = "debug"  # offsets_commit lines
    path = write_config(tmp_path, config)
    logs = [tmp_path / f"bridge-{name}.log" for name in "abc"]

    def delivered() -> int:
        return len(delivered_seqs(sandbox))

    first, second = start_bridge(path, logs[0]), start_bridge(path, logs[1])
    processes = [first, second]
    try:
        wait_for(lambda: delivered() >= records // 5, 60, "first deliveries")
        processes.append(start_bridge(path, logs[2]))
        wait_for(lambda: delivered() >= records // 2, 120, "deliveries after the join")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
        assert delivered() < records, "the kill must land mid-stream"
        wait_for(lambda: delivered() >= records, 180, "all delivered")
        recover_s = time.monotonic() - killed_at
        time.sleep(0.6)  # two commit intervals
    finally:
        for process in processes[1:]:
            process.terminate()
        for process in processes[1:]:
            assert process.wait(timeout=30) == 0
    outcome = check_stream(cluster, sandbox, "rebalance", records, PARTITIONS)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    rebalances = 0
    for log_path in logs:
        events = log_events(log_path)
        assert not commits_outside_ownership(events), log_path.name
        rebalances += sum(1 for e in events if e["event"] == "partitions_assigned")
    # Per instance and rebalance, at most its unfinished buffer is read again by the next owner.
    bound = rebalances * (MAX_BUFFERED + FETCH_BATCH)
    assert outcome.duplicated <= bound
    report(
        f"6 rebalance ({protocol}): 2 instances, 1 joins, 1 SIGKILLed",
        outcome,
        recover_s,
        f"{rebalances} assignments; no commit outside ownership; duplicates bound {bound}",
    )
