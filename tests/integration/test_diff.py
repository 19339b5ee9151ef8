"""`diff` over a window of the source topics on the real broker: only the window's records,
decoded as `run` decodes them, and the live group's offsets untouched."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bridge.devtools.sandbox import Sandbox
from bridge.ops import progress
from tests.support import (
    TestKafka,
    base_config,
    bridge_env,
    committed_and_ends,
    produce_events,
    run_cli,
    sms_event,
    start_bridge,
)


def test_a_window_of_the_source_topics_is_compared_and_the_live_group_left_alone(
    cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    now_ms = int(time.time() * 1000)
    hours_ago = now_ms - 2 * 3600 * 1000
    produce_events(
        cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 4) for seq in range(4)), [hours_ago] * 4
    )
    config = base_config(cluster, sandbox.url, "live")
    current = tmp_path / "bridge.yaml"
    current.write_text(yaml.safe_dump(config, sort_keys=False))
    assert start_bridge(current, tmp_path / "bridge.log", "--until-caught-up").wait(timeout=60) == 0
    committed = committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2)
    assert sum(offset for offset, _ in committed) == 4
    recent = now_ms - 10 * 60 * 1000
    produce_events(
        cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 4) for seq in range(4, 10)), [recent] * 6
    )
    config["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump(config, sort_keys=False))
    for name, value in bridge_env().items():
        monkeypatch.setenv(name, value)

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now_ms - 3600 * 1000) / 1000))
    args = ("diff", "--config", str(current), "--candidate", str(candidate), "--output", "json")
    code, out, err = run_cli(capsys, *args, "--from", since)
    assert code == 1, err
    result = json.loads(out)
    assert (
        result["records"] == 6 and result["commands"]["changed"] == 6 and result["commands"]["unchanged"] == 0
    )
    starts = [offset for offset, _ in committed]  # where the recent records begin
    assert all(sample["offset"] >= starts[sample["partition"]] for sample in result["samples"])
    monkeypatch.setattr(progress, "PIPE_EVERY_S", 0.0)  # a line per record, not one per 10 s
    code, out, err = run_cli(capsys, *args, "--last", "3h")
    assert code == 1 and json.loads(out)["records"] == 10
    lines = [line for line in err.splitlines() if line.startswith("diff: ")]
    assert lines[-1].startswith("diff: 10/10 records, 10 differing, ") and len(lines) == 10, err
    assert json.loads(out)["customers"] == {"affected": 4}
    code, out, _ = run_cli(capsys, *args, "--from", since, "--to", since)
    assert code == 0 and json.loads(out)["records"] == 0
    after = committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 2)
    assert [offset for offset, _ in after] == starts and sum(starts) == 4  # the live group's, as it left them
