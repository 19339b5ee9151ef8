"""deploy/prometheus and deploy/grafana: the alert rules pass Prometheus' own checks and
unit tests (promtool, from Debian's prometheus package), and every metric they or the
dashboard name is one the bridge documents (tests/integration/test_observability.py
checks each is on a running bridge's /metrics)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "intilery-bridge.json"
METRIC = re.compile(r"\bintilery_bridge_[a-z_]+")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: install Debian's prometheus package (.ci/run does)"
    return found


def monitored_metrics() -> set[str]:
    """Every intilery_bridge_* sample name the alert rules and the dashboard query."""
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    exprs = [rule["expr"] for rule in rules]
    exprs += [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    test_file = ALERTS.with_name("alerts.test.yaml")
    result = subprocess.run(
        [promtool(), "test", "rules", test_file.name], capture_output=True, text=True, cwd=test_file.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: one expected annotation changed is caught."""
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    text = ALERTS.with_name("alerts.test.yaml").read_text()
    (tmp_path / "broken.test.yaml").write_text(text.replace("200 more records", "201 more records", 1))
    result = subprocess.run(
        [promtool(), "test", "rules", "broken.test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1 and "FAILED" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "alert",
    [
        "IntileryBridgeLagGrowing",
        "IntileryBridgeNotReady",
        "IntileryBridgeCredentialsRefused",
        "IntileryBridgeDeadLetters",
        "IntileryBridgeThrottled",
    ],
)
def test_every_alert_has_a_unit_test(alert: str) -> None:
    tests = yaml.safe_load(ALERTS.with_name("alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]
    }
    assert alert in fired


def test_the_dashboard_shows_what_operators_watch() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = " / ".join(p["title"] for p in panels).lower()
    watched = ("lag (records)", "lag (seconds)", "delivered", "429", "dead letters", "event to ack")
    for topic in (*watched, "limiter", "ready"):
        assert topic in titles, topic
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)


def test_monitored_metrics_are_documented() -> None:
    readme = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(intilery_bridge_[a-z_]+)`", readme, re.MULTILINE))
    for name in monitored_metrics():
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in documented or base in documented, name
