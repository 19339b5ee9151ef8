"""Two bridge processes share a group; a third joins mid-stream, one is SIGTERMed,
then another SIGKILLed. Nothing is lost, no instance commits for a partition it
does not own; the join and the SIGTERM (clean hand-overs) resend nothing, and the
SIGKILL resends at most what was in flight or finished in its last commit window."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    acceptances,
    check_stream,
    commits_outside_ownership,
    delivered_seqs,
    drill_config,
    iso_seconds,
    offsets_at_end,
    produce_stream,
    report,
    resend_bound,
    resends,
)
from tests.support import (
    GROUP_PROTOCOLS,
    TestKafka,
    log_events,
    start_bridge,
    wait_for,
    with_protocol,
    write_config,
)

PARTITIONS = 6
MOVES = ("partitions_assigned", "partitions_revoked", "partitions_lost")
SETTLE_S = 1.0
MAX_BUFFERED = 100
LATENCY_S = 0.02


# `make drills` runs the short drill under the examples' protocol, and all three long (the
# default suite has tests/integration/test_source_rebalance.py; five minutes are its bound).
@pytest.mark.parametrize(
    ("records", "protocol"),
    [pytest.param(3000, "cooperative", id="short-cooperative", marks=pytest.mark.slow)]
    + [pytest.param(6000, p, id=f"long-{p}", marks=pytest.mark.slow) for p in GROUP_PROTOCOLS],
)
def test_join_and_kill_in_a_group(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, records: int, protocol: str
) -> None:
    cluster.create_topic(cluster.topic, PARTITIONS)
    cluster.create_topic(cluster.dlq, 1)
    produce_stream(cluster, records)
    # ~200 records/s per instance: the stream outlasts the moves
    sandbox.state.set_faults({"latency_ms": LATENCY_S * 1000})
    config = drill_config(cluster, sandbox, "rebalance", max_in_flight=4, max_buffered_records=MAX_BUFFERED)
    config["kafka"] = with_protocol(config["kafka"], protocol)
    config["log"]["level"] = "debug"  # offsets_commit lines
    path = write_config(tmp_path, config)
    logs = [tmp_path / f"bridge-{name}.log" for name in "abc"]

    def delivered() -> int:
        return len(delivered_seqs(sandbox))

    def committed_to_the_end() -> bool:
        return offsets_at_end(cluster, "rebalance", PARTITIONS)

    def settled() -> bool:
        """The joiner holds partitions and no member's partitions moved for a second: each
        step lands in a settled group, the SIGKILL included (one during a cooperative
        rebalance's second round also resends what the broker refused to commit then)."""
        events = {log: log_events(log) if log.exists() else [] for log in logs}
        moves = [iso_seconds(e["timestamp"]) for es in events.values() for e in es if e["event"] in MOVES]
        joined = any(e["partitions"] for e in events[logs[2]] if e["event"] == "partitions_assigned")
        return joined and time.time() - max(moves) > SETTLE_S

    first, second = start_bridge(path, logs[0]), start_bridge(path, logs[1])
    processes = [first, second]
    try:
        wait_for(lambda: delivered() >= records // 5, 60, "first deliveries", processes)
        processes.append(start_bridge(path, logs[2]))
        wait_for(settled, 60, "the joiner's partitions", processes)
        wait_for(lambda: delivered() >= records * 2 // 5, 120, "deliveries after the join", processes)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        running = [first, processes[2]]
        wait_for(settled, 60, "the SIGTERMed member's partitions moved", running)
        wait_for(lambda: delivered() >= records * 3 // 5, 120, "deliveries after the SIGTERM", running)
        killed_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        recover_from = time.monotonic()
        assert delivered() < records, "the kill must land mid-stream"
        wait_for(lambda: delivered() >= records, 180, "all delivered", processes[2:])
        recover_s = time.monotonic() - recover_from
        # Every command may have arrived before the killed member's partitions moved (its
        # last ones in flight at the kill): the survivor commits them once its session ends.
        wait_for(committed_to_the_end, 60, "the group's commits at the end", processes[2:])
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                assert process.wait(timeout=30) == 0
    outcome = check_stream(cluster, sandbox, "rebalance", records, PARTITIONS)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    rebalances = 0
    for log_path in logs:
        events = log_events(log_path)
        assert not commits_outside_ownership(events), log_path.name
        rebalances += sum(1 for e in events if e["event"] == "partitions_assigned")
    times = acceptances(sandbox)
    clean = resends(times, 0, killed_at)  # the join and the SIGTERM: clean hand-overs
    killed, bound = resends(times, killed_at), resend_bound(times, killed_at, LATENCY_S)
    assert clean == 0, f"{clean} commands resent after a clean hand-over"
    assert killed <= bound and clean + killed == outcome.duplicated
    report(
        f"6 rebalance ({protocol}): 2 instances, 1 joins, 1 SIGTERMed, 1 SIGKILLed",
        outcome,
        recover_s,
        f"{rebalances} assignments; no commit outside ownership; resent after the join and the SIGTERM "
        f"{clean}, after the SIGKILL {killed} (bound {bound})",
    )
