"""deploy/prometheus and deploy/grafana: every alert has a unit test, and every metric the
rules or the dashboard name is one the bridge documents (tests/integration/test_observability.py
checks each is on a running bridge's /metrics; tests/integration/test_alert_rules.py runs
Prometheus' own checks and the unit tests with promtool)."""

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


def monitored_metrics() -> set[str]:
    """Every intilery_bridge_* sample name the alert rules and the dashboard query."""
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    exprs = [rule["expr"] for rule in rules]
    exprs += [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return {name for expr in exprs for name in METRIC.findall(expr)}


@pytest.mark.parametrize(
    "alert", [rule["alert"] for rule in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]]
)
def test_every_alert_has_a_unit_test(alert: str) -> None:
    tests = yaml.safe_load(ALERTS.with_name("alerts.test.yaml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alert in fired


def test_the_dashboard_shows_what_operators_watch() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = " / ".join(p["title"] for p in panels).lower()
    watched = ("lag (records)", "lag (seconds)", "delivered", "429", "dead letters", "event to ack")
    for topic in (*watched, "limiter", "ready"):
        assert topic in titles, topic
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)


def test_every_dashboard_query_is_scoped_by_namespace_and_job() -> None:
    """Two deployments (staging and production, or two accounts) in one Prometheus were
    summed together: the dashboard picks a namespace and a job."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in ("namespace", "job"):
        assert variables[name]["query"]["query"] == f"label_values(intilery_bridge_build_info, {name})"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"  # also without the label
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            selectors = re.findall(r"\bintilery_bridge_[a-z_]+(\{[^}]*\})?", target["expr"])
            assert selectors and all(
                'namespace=~"$namespace"' in s and 'job=~"$job"' in s for s in selectors
            ), target["expr"]


def documented_metrics() -> set[str]:
    """The bridge's own metrics in docs/operations.md's table, as exposed (``_total`` on
    counters; a histogram by its family name)."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(intilery_bridge_[a-z_]+)`", readme, re.MULTILINE))


def test_monitored_metrics_are_documented() -> None:
    documented = documented_metrics()
    for name in monitored_metrics():
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in documented or base in documented, name


def test_make_test_says_in_one_line_what_it_needs_when_it_cannot_install_it(tmp_path: Path) -> None:
    """A fresh machine without promtool and redis-server: 3 failed and 3 errors after five
    minutes; now one line at once, naming what is missing and the command that installs it."""
    (tmp_path / "id").symlink_to(shutil.which("id") or "/usr/bin/id")  # nothing else on PATH
    result = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "services")],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path), "BRIDGE_NO_INSTALL": "1"},
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "make test needs java mvn promtool redis-server: sudo apt-get install openjdk-17-jre-headless "
        "maven prometheus redis-server (make unit needs only Python)\n"
    )
