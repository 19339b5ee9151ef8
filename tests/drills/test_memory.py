"""Memory bounded in bytes: 100 KB events pile up while Intilery is away. With
``delivery.max_buffered_bytes`` the bridge pauses at that many bytes of unfinished
records; measured against the same bridge bounded by records only (the default
``max_buffered_records``, 10,000, as before the bytes bound), in the same run."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.drills.support import DrillBridge, Outcome, drill_config, report, rss_mb
from tests.support import TestKafka, accepted, log_events, produce_events, sms_event, wait_for

EVENT_BYTES = 100_000


def peak_rss_through_an_outage(
    cluster: TestKafka,
    sandbox: Sandbox,
    drill_bridge: DrillBridge,
    tmp_path: Path,
    group: str,
    max_bytes: int,
    records: int,
    outage_s: float,
    kafka: dict[str, Any],
) -> tuple[float, float]:
    """RSS at the start and at its peak (sampled every 0.25 s) while Intilery refuses
    connections for ``outage_s``, then until every record is delivered."""
    config = drill_config(cluster, sandbox, group, max_buffered_bytes=max_bytes)
    config["kafka"] |= kafka
    log_path = tmp_path / f"{group}.log"
    before = len(accepted(sandbox))
    sandbox.refuse_connections()
    with drill_bridge(config, log_path) as process:
        wait_for(lambda: "partitions_assigned" in {e["event"] for e in log_events(log_path)}, 30, "assigned")
        start = peak = rss_mb(process.pid)
        ends = time.monotonic() + outage_s
        while time.monotonic() < ends:
            peak = max(peak, rss_mb(process.pid))
            time.sleep(0.25)
        sandbox.accept_connections()

        def delivered() -> bool:
            nonlocal peak
            peak = max(peak, rss_mb(process.pid))
            return len(accepted(sandbox)) - before >= records

        wait_for(delivered, 120, "every record delivered after the outage")
        assert process.poll() is None
    return start, peak


@pytest.mark.parametrize(
    ("records", "outage_s", "bound_mib", "kafka"),
    [
        # librdkafka's own prefetch (queued.max.messages.kbytes, 64 MiB by default) comes on
        # top of the bridge's buffer: the short version keeps it small, so that what the
        # bridge holds shows in a few seconds; the long one runs with the defaults, so its
        # bound is kept well under the 64 MiB librdkafka may hold besides (with a bound of
        # 64 MiB, bridge and librdkafka together held about what 1,500 events did unbounded).
        # Both in `make drills` (CI runs it): the short one was the default suite's longest test.
        pytest.param(300, 8, 2, {"queued.max.messages.kbytes": 2048}, id="short", marks=pytest.mark.slow),
        pytest.param(2000, 60, 16, {}, id="long", marks=pytest.mark.slow),
    ],
)
def test_memory_is_bounded_in_bytes_through_an_outage(
    drill_cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    outage_s: float,
    bound_mib: int,
    kafka: dict[str, Any],
) -> None:
    padding = "x" * (EVENT_BYTES - 200)
    events = ({**sms_event(seq, 50), "notes": padding} for seq in range(records))
    produce_events(drill_cluster.bootstrap_servers, drill_cluster.topic, events)
    bound = bound_mib << 20
    runs = {
        label: peak_rss_through_an_outage(
            drill_cluster, sandbox, drill_bridge, tmp_path, label, max_bytes, records, outage_s, kafka
        )
        for label, max_bytes in (("bytes", bound), ("records", 1 << 40))
    }
    (start, bounded), (_, unbounded) = runs["bytes"], runs["records"]
    held_mib = records * EVENT_BYTES / (1 << 20)
    assert bounded < 300, f"{bounded:.0f} MB"
    assert bounded < unbounded, runs
    sent = Counter(int(call["body"]["seq"]) for call in accepted(sandbox))  # each group sends each once
    lost = sum(1 for seq in range(records) if sent[seq] < 2)
    assert lost == 0
    report(
        f"11 memory: {records:,} events of 100 KB, Intilery away {outage_s:g} s",
        Outcome(records, lost, sum(max(0, sent[seq] - 2) for seq in range(records)), 0),
        None,
        f"peak RSS {bounded:.0f} MB with max_buffered_bytes {bound_mib} MiB (from {start:.0f} MB) against "
        f"{unbounded:.0f} MB bounded by records only ({held_mib:.0f} MiB of events held)"
        + (f"; librdkafka's {kafka}" if kafka else "; librdkafka's defaults"),
    )
