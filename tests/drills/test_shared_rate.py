"""Three replicas of one group against an Intilery account limited to 100 requests/s
(burst 500), each with the default configuration (the account's rate, nothing divided
by hand): each takes its share of the partitions' worth of the rate, so together they
keep under the account's limit and still use most of it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    PARTITIONS,
    check_stream,
    delivered_seqs,
    drill_config,
    iso_seconds,
    produce_stream,
    report,
)
from tests.integration.test_redis_rate import RedisServer
from tests.support import TOKEN, TestKafka, bridge_env, log_events, start_bridge, wait_for, write_config

ACCOUNT_RATE, ACCOUNT_BURST = 100, 500
REPLICAS = 3
SETTLE_S = 2.0  # after the last replica's assignment: start-up over


@pytest.mark.parametrize(
    ("records", "kill"),
    [
        pytest.param(1800, False, id="short", marks=pytest.mark.slow),
        pytest.param(6000, True, id="long", marks=pytest.mark.slow),
    ],
)
def test_replicas_share_the_account_rate(
    drill_cluster: TestKafka, tmp_path: Path, records: int, kill: bool
) -> None:
    """The long version also SIGKILLs one replica halfway: the survivors take its share
    once the group has moved its partitions."""
    produce_stream(drill_cluster, records)
    with Sandbox(token=TOKEN, rate=ACCOUNT_RATE, burst=ACCOUNT_BURST) as account:
        config = drill_config(drill_cluster, account, "share")
        del config["intilery"]["rate_limit"]  # the defaults: the account's 100/s, burst 500
        path = write_config(tmp_path, config)
        logs = [tmp_path / f"bridge-{n}.log" for n in range(REPLICAS)]
        processes = [start_bridge(path, log) for log in logs]

        def shares(of: list[Path] = logs) -> list[float]:
            """Each replica's last logged rate (its share of the account's)."""
            found = []
            for log in of:
                events = log_events(log) if log.exists() else []
                shared = [e for e in events if e["event"] == "rate_limit_shared"]
                found.append(shared[-1]["per_second"] if shared else ACCOUNT_RATE)
            return found

        killed_at = taken_over_at = None
        try:
            wait_for(lambda: sum(shares()) <= ACCOUNT_RATE + 0.01, 60, "every replica's share")
            settled_at, settled_shares = time.time() + SETTLE_S, shares()
            if kill:
                wait_for(lambda: len(delivered_seqs(account)) >= records // 2, 240, "half delivered")
                processes[0].send_signal(signal.SIGKILL)
                processes[0].wait(timeout=10)
                killed_at = time.time()
                wait_for(lambda: sum(shares(logs[1:])) >= ACCOUNT_RATE - 0.01, 60, "the survivors' shares")
                taken_over_at = time.time() + SETTLE_S
            wait_for(lambda: len(delivered_seqs(account)) >= records, 300, "all delivered")
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    assert process.wait(timeout=30) == 0
        outcome = check_stream(drill_cluster, account, "share", records)
        attempts = account.state.attempts
    assert outcome.lost == 0 and outcome.dead_lettered == 0

    def measured(start: float, until_first_idle: list[Path], end: float | None = None) -> tuple[float, int]:
        """Accepted requests per second and 429s from ``start`` until ``end`` or the first
        of these replicas ran out of records: from then on the others, capped at their
        shares, cannot use all of the account (partitions of unequal load: docs/operations.md)."""
        busy_until = min(
            max(iso_seconds(e["timestamp"]) for e in log_events(log) if e["event"] == "command_delivered")
            for log in until_first_idle
        )
        window = [a for a in attempts if start <= a["at"] <= min(busy_until, end or busy_until)]
        accepted = sorted(a["at"] for a in window if a["status"] == 200)
        rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
        return rate, sum(1 for a in window if a["status"] == 429)

    rate, throttled = measured(settled_at, logs, killed_at)
    startup = sum(1 for a in attempts if a["at"] < settled_at and a["status"] == 429)
    assert throttled == 0, f"{throttled} requests refused with 429 after start-up"
    assert rate >= 0.9 * ACCOUNT_RATE, f"{rate:.1f}/s in aggregate"
    notes = (
        f"shares {', '.join(f'{s:.1f}' for s in settled_shares)}/s; after start-up 0 x 429 and {rate:.1f}/s "
        f"in aggregate ({rate / ACCOUNT_RATE:.2f} of the limit); {startup} x 429 during start-up"
    )
    if taken_over_at is not None and killed_at is not None:
        after, throttled = measured(taken_over_at, logs[1:])
        assert throttled == 0, f"{throttled} requests refused with 429 after the take-over"
        assert after >= 0.9 * ACCOUNT_RATE, f"{after:.1f}/s in aggregate after the take-over"
        notes += (
            f"; one SIGKILLed: the two left took its share {taken_over_at - SETTLE_S - killed_at:.1f} s "
            f"later, then {after:.1f}/s, 0 x 429"
        )
    name = f"10 {REPLICAS} replicas share the account's {ACCOUNT_RATE}/s (burst {ACCOUNT_BURST})"
    report(name, outcome, None, notes)


@pytest.mark.slow
def test_replicas_and_a_replay_share_the_account_through_redis(
    drill_cluster: TestKafka, tmp_path: Path
) -> None:
    """With intilery.rate_limit.redis, the three replicas and a replay beside them draw
    from one bucket in Redis: no 429, and together most of the account's rate; then one
    replica is SIGKILLed and the two left go on at the account's rate, taking its
    partitions once the group moves them."""
    records, last_replayed = 6000, 333  # the replay reads offsets 0 to 333 of each partition
    replayed = PARTITIONS * (last_replayed + 1)
    produce_stream(drill_cluster, records)
    redis = RedisServer()
    redis.start()
    try:
        with Sandbox(token=TOKEN, rate=ACCOUNT_RATE, burst=ACCOUNT_BURST) as account:
            config = drill_config(drill_cluster, account, "share-redis")
            config["intilery"]["rate_limit"] = {"redis": {"url": redis.url}}
            path = write_config(tmp_path, config)
            logs = [tmp_path / f"bridge-{n}.log" for n in range(REPLICAS)]
            processes = [start_bridge(path, log) for log in logs]
            try:
                wait_for(lambda: len(delivered_seqs(account)) >= records // 4, 120, "deliveries")
                started_at = time.time()
                replay = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bridge",
                        "replay",
                        "--config",
                        str(path),
                        "--topic",
                        drill_cluster.topic,
                        "--from-beginning",
                        "--to-offset",
                        ",".join(f"{p}:{last_replayed}" for p in range(PARTITIONS)),
                    ],
                    capture_output=True,
                    text=True,
                    env=bridge_env(),
                    timeout=300,
                )
                assert replay.returncode == 0, replay.stderr
                replay_done_at = time.time()
                processes[0].send_signal(signal.SIGKILL)
                processes[0].wait(timeout=10)
                killed_at = time.time()
                wait_for(lambda: len(delivered_seqs(account)) >= records, 300, "all delivered")
            finally:
                for process in processes:
                    process.terminate()
                    assert process.wait(timeout=30) in (0, -signal.SIGKILL)
            outcome = check_stream(drill_cluster, account, "share-redis", records)
            attempts = account.state.attempts
    finally:
        redis.stop()
    assert outcome.lost == 0 and outcome.dead_lettered == 0
    throttled = sum(1 for a in attempts if a["status"] == 429)
    rate = accepted_rate(attempts, started_at, replay_done_at)
    after_kill = accepted_rate(attempts, killed_at, float("inf"))
    taken = [
        at
        for log in logs[1:]
        for e in log_events(log)
        if e["event"] == "partitions_assigned" and (at := iso_seconds(e["timestamp"])) > killed_at
    ]
    resent = outcome.duplicated - replayed
    assert throttled == 0, f"{throttled} requests refused with 429"
    assert rate >= 0.9 * ACCOUNT_RATE, f"{rate:.1f}/s in aggregate while the replay ran"
    assert after_kill >= 0.9 * ACCOUNT_RATE, f"{after_kill:.1f}/s in aggregate after the kill"
    assert taken, "the two left never took the killed replica's partitions"
    report(
        f"10 {REPLICAS} replicas and a replay share the account through Redis, one SIGKILLed",
        outcome,
        None,
        f"0 x 429 from start to end; {rate:.1f}/s in aggregate ({rate / ACCOUNT_RATE:.2f} of the limit) "
        f"while a replay of {replayed} records ran beside them (counted as duplicated); after one "
        f"replica's SIGKILL the two left {after_kill:.1f}/s, 0 x 429, and took its partitions "
        f"{min(taken) - killed_at:.1f} s later ({resent} resent)",
        broker="Kafka, Redis",
    )


def accepted_rate(attempts: list[dict[str, Any]], start: float, end: float) -> float:
    """Requests/s Intilery accepted between ``start`` and ``end`` (Unix seconds)."""
    accepted = sorted(a["at"] for a in attempts if start <= a["at"] <= end and a["status"] == 200)
    return (len(accepted) - 1) / (accepted[-1] - accepted[0])
