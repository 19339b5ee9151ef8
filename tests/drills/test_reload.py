"""Reload the rules every second under load (SIGHUP, each time a new asset): nothing is
lost or resent across the reloads, and each partition's records are mapped by the old
rules up to a point and by the new ones after it, never back (by ``rules_version``)."""

from __future__ import annotations

import signal
import time
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from bridge.devtools.sandbox import Sandbox
from bridge.rules.mapping import rules_version
from tests.drills.support import (
    DrillBridge,
    check_stream,
    delivered_seqs,
    drill_config,
    produce_stream,
    report,
)
from tests.support import TestKafka, log_events, wait_for

LATENCY_S = 0.02
RELOAD_EVERY_S = 1.0


# `make drills` only: `make test` has the reloads' mechanics on the real broker
# (tests/integration/test_reload.py) and stays under five minutes.
@pytest.mark.slow
@pytest.mark.parametrize("records", [pytest.param(4000, id="long")])
def test_reloads_under_load_lose_and_resend_nothing(
    drill_cluster: TestKafka, sandbox: Sandbox, drill_bridge: DrillBridge, tmp_path: Path, records: int
) -> None:
    produce_stream(drill_cluster, records)
    sandbox.state.set_faults({"latency_ms": LATENCY_S * 1000})  # ~200 records/s: many reloads land mid-stream
    config = drill_config(drill_cluster, sandbox, "reload", max_in_flight=4, max_buffered_records=200)
    path, log_path = tmp_path / "bridge.yaml", tmp_path / "bridge.log"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assets = {rules_version(config["rules"]): "ASSET-SMS"}  # the rules' version → the asset they send
    with drill_bridge(path, log_path) as process:
        wait_for(lambda: len(delivered_seqs(sandbox)) > 0, 30, "the first delivery", [process])
        while len(delivered_seqs(sandbox)) < records:
            time.sleep(RELOAD_EVERY_S)
            config["rules"][0]["emit"]["assetId"] = asset = f"ASSET-{len(assets)}"
            assets[rules_version(config["rules"])] = asset
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            process.send_signal(signal.SIGHUP)
            # One at a time: two signals before the first reload ran would make one reload.
            wait_for(lambda: len(reloads(log_path)) == len(assets) - 1, 10, "the reload", [process])
        wait_for(lambda: len(delivered_seqs(sandbox)) >= records, 60, "all delivered", [process])
    outcome = check_stream(drill_cluster, sandbox, "reload", records)
    assert outcome.lost == 0 and outcome.duplicated == 0 and outcome.dead_lettered == 0
    events = log_events(log_path)
    reloaded = reloads(log_path)
    assert reloaded == list(assets)[1:] and not [e for e in events if e["event"] == "config_reload_failed"]
    order = {version: index for index, version in enumerate(assets)}
    delivered = [e for e in events if e["event"] == "command_delivered"]
    assert all(e["assetId"] == assets[e["rules_version"]] for e in delivered)  # mapped by that version
    backwards, used = 0, set()
    for partition in {e["partition"] for e in delivered}:
        versions = [
            order[e["rules_version"]]
            for e in sorted(delivered, key=lambda e: e["offset"])
            if e["partition"] == partition
        ]
        backwards += sum(1 for a, b in pairwise(versions) if b < a)
        used |= set(versions)
    assert backwards == 0, f"{backwards} records mapped by older rules than a record before them"
    report(
        f"12 rules reloaded every {RELOAD_EVERY_S:.0f} s under load (SIGHUP)",
        outcome,
        notes=f"{len(reloaded)} reloads, {len(used)} rule versions delivered; "
        "each partition's records by old rules then new, never back; 0 lost, 0 resent",
    )


def reloads(log_path: Path) -> list[str]:
    """The versions each reload put in force, in order."""
    return [e["rules_version"] for e in log_events(log_path) if e["event"] == "config_reloaded"]
