"""Reloading the rules of a running bridge on the real broker: a file change seen by
--watch, a broken file and a changed group refused (the old rules go on), SIGHUP; the
rules' version in the log lines, a dead letter's header and /metrics."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import yaml

from bridge.devtools.sandbox import Sandbox
from tests.integration.test_observability import observability_client, sample
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    log_events,
    produce_events,
    read_all,
    sms_event,
    start_bridge,
    wait_for,
    write_config,
)


def produce(cluster: TestKafka, seqs: range) -> None:
    produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 5) for seq in seqs))


def replace(path: Path, text: str) -> None:
    """Write the file at once (as an editor or a ConfigMap does), never half-written."""
    staged = path.with_suffix(".staged")
    staged.write_text(text)
    os.replace(staged, path)


def lines(log_path: Path, event: str) -> list[dict[str, Any]]:
    return [entry for entry in log_events(log_path) if entry["event"] == event]


def test_a_reload_changes_the_commands_of_the_records_after_it(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    config = base_config(cluster, sandbox.url, "reload")
    path, log_path = write_config(tmp_path, config), tmp_path / "bridge.log"
    produce(cluster, range(5))
    process = start_bridge(path, log_path, "--watch")
    try:
        http = observability_client(log_path)
        wait_for(lambda: len(accepted(sandbox)) == 5, 30, "the first five", [process])
        (started,) = lines(log_path, "bridge_started")
        first = started["rules_version"]

        config["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
        replace(path, yaml.safe_dump(config, sort_keys=False))  # seen by --watch, no signal
        wait_for(lambda: lines(log_path, "config_reloaded"), 10, "the reload", [process])
        (reloaded,) = lines(log_path, "config_reloaded")
        second = reloaded["rules_version"]
        assert second != first and reloaded["rules"] == len(config["rules"])
        produce(cluster, range(5, 10))
        wait_for(lambda: len(accepted(sandbox)) == 10, 30, "five more", [process])

        replace(path, "rules: [\n")  # broken: refused, the old rules go on
        wait_for(lambda: len(lines(log_path, "config_reload_failed")) == 1, 10, "a refusal", [process])
        config["kafka"]["group.id"] = "another"
        replace(path, yaml.safe_dump(config, sort_keys=False))
        wait_for(lambda: len(lines(log_path, "config_reload_failed")) == 2, 10, "a refusal", [process])
        process.send_signal(signal.SIGHUP)  # the same file again, on request
        wait_for(lambda: len(lines(log_path, "config_reload_failed")) == 3, 10, "a refusal", [process])
        produce(cluster, range(10, 15))
        producer = CheckedProducer(cluster.bootstrap_servers)
        producer.produce(cluster.topic, value=b"not json")
        producer.flush()
        wait_for(lambda: len(accepted(sandbox)) == 15, 30, "five more", [process])
        wait_for(lambda: lines(log_path, "command_dead_lettered"), 30, "the dead letter", [process])
        metrics = http.get("/metrics").text
        http.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0

    assets = {int(call["body"]["seq"]): call["body"]["assetId"] for call in accepted(sandbox)}
    assert assets == {seq: "ASSET-SMS" if seq < 5 else "ASSET-SMS-2" for seq in range(15)}
    versions = {int(line["offset"]): line["rules_version"] for line in lines(log_path, "command_delivered")}
    assert versions == {offset: first if offset < 5 else second for offset in range(15)}
    broken, group, again = (line["problems"] for line in lines(log_path, "config_reload_failed"))
    assert any("invalid YAML" in problem for problem in broken)
    assert (
        group
        == again
        == [f"{path}: kafka.group.id: changed, and only rules reload: restart the bridge for it"]
    )
    (dead,) = lines(log_path, "command_dead_lettered")
    assert dead["rules_version"] == second
    (letter,) = read_all(cluster.bootstrap_servers, cluster.dlq)
    assert dict(letter.headers())["x-bridge-rules-version"] == second.encode()
    assert sample(metrics, "intilery_bridge_rules_info", rules_version=second) == 1
    assert sample(metrics, "intilery_bridge_config_reloads_total", result="ok") == 1
    assert sample(metrics, "intilery_bridge_config_reloads_total", result="failed") == 3
