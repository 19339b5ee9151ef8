"""SIGKILL the bridge mid-stream and restart it: every command arrives at least
once; per kill, the commands sent again are at most those in flight at the kill
and those finished in the last commit window (the restarted bridge skips every
other finished record: the commit's map names them). With an audit topic, the
restarted bridge reads the entries written since the last commit and sends none
of those commands again (or, with ``skip_audited: false``, marks them ``resent``):
what is sent twice is only what Intilery accepted without its entry reaching the
topic before the kill."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    Outcome,
    acceptances,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
    resend_bound,
    resends,
)
from tests.support import TestKafka, accepted, read_all, start_bridge, wait_for, write_config

MAX_BUFFERED = 200
LATENCY_S = 0.01
AUDIT_PARTITIONS = 3


def killed_and_restarted(
    cluster: TestKafka,
    sandbox: Sandbox,
    config: Path,
    log_path: Path,
    records: int,
    kills: int,
    bounded: bool = True,
) -> tuple[Outcome, list[int], list[int], float]:
    """``kills`` SIGKILLs at random points of the stream, then a run to its end: the outcome,
    the resends after each kill, their bounds (``bounded``: checked), and how long the last
    run took."""
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
    recovered_s = time.monotonic() - started
    outcome = check_stream(cluster, sandbox, "crash", records)
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    times = acceptances(sandbox)
    ends = [*kills_at[1:], float("inf")]
    resent = [resends(times, killed, end) for killed, end in zip(kills_at, ends, strict=True)]
    bounds = [resend_bound(times, killed, LATENCY_S) for killed in kills_at]
    assert sum(resent) == outcome.duplicated  # every duplicate is a resend after a kill
    assert not bounded or all(r <= b for r, b in zip(resent, bounds, strict=True)), f"{resent}, {bounds}"
    return outcome, resent, bounds, recovered_s


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
    outcome, resent, bounds, recovered_s = killed_and_restarted(
        drill_cluster, sandbox, config, tmp_path / "bridge.log", records, kills
    )
    report(
        f"1 crash: SIGKILL x{kills}",
        outcome,
        recovered_s,
        "resent per kill "
        + ", ".join(f"{r} (bound {b})" for r, b in zip(resent, bounds, strict=True))
        + ": in flight at the kill + finished in the last commit window",
    )


@pytest.mark.slow
@pytest.mark.parametrize("skip", [True, False], ids=["skip-audited", "mark-resent"])
def test_sigkill_and_restart_with_an_audit_topic(
    drill_cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, skip: bool
) -> None:
    records, kills = 5000, 5
    audit_topic = f"{drill_cluster.topic}.audit"
    drill_cluster.create_topic(audit_topic, AUDIT_PARTITIONS)
    produce_stream(drill_cluster, records)
    sandbox.state.set_faults({"latency_ms": LATENCY_S * 1000})
    delivery = {"max_buffered_records": MAX_BUFFERED, "audit_topic": audit_topic, "skip_audited": skip}
    config = write_config(tmp_path, drill_config(drill_cluster, sandbox, "crash", **delivery))
    # Sent again and marked (skip_audited: false), the commands whose entries were written are
    # resent too: more than a bridge without an audit topic resends (its records finish sooner).
    outcome, resent, bounds, recovered_s = killed_and_restarted(
        drill_cluster, sandbox, config, tmp_path / "bridge.log", records, kills, bounded=skip
    )
    entries = {
        entry["eventId"]: entry
        for entry in (
            json.loads(m.value())
            for m in read_all(drill_cluster.bootstrap_servers, audit_topic, AUDIT_PARTITIONS)
        )
    }
    calls: dict[int, list[dict[str, Any]]] = defaultdict(list)  # seq -> its acceptances, in order
    for call in accepted(sandbox):
        calls[call["body"]["seq"]].append(call)
    assert set(entries) <= {call["eventId"] for seq_calls in calls.values() for call in seq_calls}
    unaudited = sum(1 for c in calls.values() for call in c if call["eventId"] not in entries)
    assert len(entries) + unaudited == sum(len(c) for c in calls.values())  # one entry per acceptance at most
    marked = 0
    for seq_calls in calls.values():
        audited = [call["eventId"] in entries for call in seq_calls]
        if skip:  # an acceptance the audit topic had is never followed by another
            assert not any(audited[:-1]), f"seq {seq_calls[0]['body']['seq']} sent again after its entry"
        for index, call in enumerate(seq_calls):
            if (entry := entries.get(call["eventId"])) is not None:  # resent: exactly when one before had one
                assert entry["resent"] == any(audited[:index]), (
                    f"seq {call['body']['seq']}, acceptance {index}"
                )
                marked += entry["resent"]
    mode = "skip_audited" if skip else "skip_audited: false"
    report(
        f"1b crash with an audit topic ({mode}): SIGKILL x{kills}",
        outcome,
        recovered_s,
        "resent per kill "
        + ", ".join(f"{r} (bound {b})" for r, b in zip(resent, bounds, strict=True))
        + f"; {len(entries)} audit entries, {unaudited} acceptances without one (died with the process)"
        + (f"; {marked} entries marked resent" if not skip else ""),
    )
