"""`run --shadow` on the real broker: delivery by the live rules only, the candidate's
differences counted by hand, SIGHUP reloading the candidate too."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from bridge.devtools.sandbox import Sandbox
from bridge.rules.mapping import rules_version
from tests.integration.test_observability import observability_client, sample
from tests.integration.test_reload import lines, replace
from tests.support import TestKafka, accepted, base_config, produce_events, sms_event, start_bridge, wait_for


def viewed(seq: int) -> dict[str, Any]:
    return {
        "type": "booking_viewed",
        "seq": seq,
        "customer": {"id": f"C-{seq}"},
        "booking": {"id": f"B-{seq}"},
    }


def test_the_candidate_is_counted_never_sent_and_reloaded_on_sighup(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    config = base_config(cluster, sandbox.url, "shadowed")
    live, candidate = tmp_path / "bridge.yaml", tmp_path / "candidate.yaml"
    live.write_text(yaml.safe_dump(config, sort_keys=False))
    config["rules"][0]["emit"]["assetId"] = "ASSET-SHADOW"
    candidate.write_text(yaml.safe_dump(config, sort_keys=False))
    produce_events(
        cluster.bootstrap_servers, cluster.topic, [*(sms_event(s, 3) for s in range(6)), viewed(6), viewed(7)]
    )
    log_path = tmp_path / "bridge.log"
    process = start_bridge(live, log_path, "--shadow", str(candidate))
    try:
        http = observability_client(log_path)
        wait_for(lambda: len(accepted(sandbox)) == 8, 30, "the first eight", [process])
        first = http.get("/metrics").text
        config["rules"][0]["emit"]["assetId"] = "ASSET-SHADOW-2"
        config["rules"] = [rule for rule in config["rules"] if rule["name"] != "viewed"]
        replace(candidate, yaml.safe_dump(config, sort_keys=False))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(log_path, "config_reloaded"), 10, "the reload", [process])
        produce_events(
            cluster.bootstrap_servers, cluster.topic, [*(sms_event(s, 3) for s in range(8, 11)), viewed(11)]
        )
        wait_for(lambda: len(accepted(sandbox)) == 12, 30, "four more", [process])
        second = http.get("/metrics").text
        http.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0

    assert {call["body"].get("assetId") for call in accepted(sandbox)} == {"ASSET-SMS", None}  # live only
    shadowed = "intilery_bridge_shadow_commands_total"
    assert sample(first, shadowed, rule="abandoned-sms", difference="changed") == 6
    assert sample(first, shadowed, rule="viewed", difference="unchanged") == 2
    assert sample(second, shadowed, rule="abandoned-sms", difference="changed") == 9
    assert sample(second, shadowed, rule="viewed", difference="removed") == 1
    (reloaded,) = lines(log_path, "config_reloaded")
    assert reloaded["shadow_rules_version"] == rules_version(config["rules"])
    differences = lines(log_path, "shadow_difference")
    assert differences and all("ASSET" not in str(line["fields"]) for line in differences)
