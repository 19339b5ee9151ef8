"""deploy/prometheus: the alert rules pass Prometheus' own checks and their unit tests
(promtool, from Debian's prometheus package, which `make test` brings: .ci/services)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ALERTS = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: install Debian's prometheus package (.ci/run does)"
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = len(yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


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
