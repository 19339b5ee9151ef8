"""One loading for every verb: the same broken files, given to every verb that reads a
configuration (either side of `diff`, the candidate of `run --shadow`), are refused by
each with exit 2 and every line `check` prints for them (check's own exit: 1): none
drops a rule, none stops at the first problem, none passes a section `check` refuses.
(`map`, `test`, `diff` and `--shadow` dropped a misspelt rule and went on, and read only
`source` and `rules`; reload is tested in tests/unit/test_reload.py.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.support import base_config, bridge_env, run_cli, sms_event

UNREACHABLE = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")


def good() -> dict[str, Any]:
    return base_config(UNREACHABLE, "http://127.0.0.1:9", "one-loading")


def changed(change: Callable[[dict[str, Any]], None]) -> str:
    config = copy.deepcopy(good())
    change(config)
    return yaml.safe_dump(config, sort_keys=False)


def misspelt_rule_key(config: dict[str, Any]) -> None:
    config["rules"][0]["maxAge"] = "2h"


def misspelt_emit(config: dict[str, Any]) -> None:
    config["rules"][1]["emitt"] = config["rules"][1].pop("emit")


def misspelt_section_key(config: dict[str, Any]) -> None:
    config["delivery"]["dead_leter_topic"] = config["delivery"].pop("dead_letter_topic")


def two_rules_two_problems(config: dict[str, Any]) -> None:
    config["rules"][0]["max_age"] = "-5m"
    config["rules"][1]["emit"]["event"] = "send_print"  # and no assetId for it
    del config["rules"][1]["emit"]["assetId"]


BROKEN = {
    "a rule's key misspelt": changed(misspelt_rule_key),
    "emit misspelt": changed(misspelt_emit),
    "a section's key misspelt": changed(misspelt_section_key),
    "two rules, a problem each": changed(two_rules_two_problems),
    "an empty file": "",
    "a tab": yaml.safe_dump(good(), sort_keys=False).replace("  group.id", "\tgroup.id", 1),
}


def verbs(broken: Path, good_file: Path, events: Path, tests: Path) -> dict[str, list[str]]:
    """Every way a verb reads a configuration, the broken file in it."""
    config = ["--config", str(broken)]
    return {
        "run": ["run", *config],
        "map": ["map", *config, str(events)],
        "test": ["test", *config, str(tests)],
        "diff, current": ["diff", *config, "--candidate", str(good_file), str(events)],
        "diff, candidate": ["diff", "--config", str(good_file), "--candidate", str(broken), str(events)],
        "run --shadow": ["run", "--config", str(good_file), "--shadow", str(broken)],
        "replay": ["replay", *config, "--topic", "bookings", "--from-beginning"],
        "redrive": ["redrive", *config],
    }


@pytest.mark.parametrize("case", BROKEN)
def test_every_verb_refuses_what_check_refuses_with_the_same_lines(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in bridge_env().items():
        monkeypatch.setenv(name, value)
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN[case])
    good_file = tmp_path / "good.yaml"
    good_file.write_text(yaml.safe_dump(good(), sort_keys=False))
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(sms_event(1, 2)) + "\n")
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump({"tests": [{"name": "one", "event": sms_event(1, 2), "expected": []}]}))

    code, _, err = run_cli(capsys, "check", "--config", str(broken))
    lines = [line for line in err.splitlines() if line.startswith(str(broken))]
    assert code == 1 and lines, err  # check: 1, problems found; the others: 2, refused
    if case == "two rules, a problem each":  # one problem does not hide the other
        assert any("rules[0] (abandoned-sms).max_age" in line for line in lines), lines
        assert any("assetId: required for send_print" in line for line in lines), lines
    for verb, args in verbs(broken, good_file, events, tests).items():
        code, out, err = run_cli(capsys, *args)
        assert code == 2, f"{verb}: exit {code}\n{out}{err}"
        missing = [line for line in lines if line not in err]
        assert not missing, f"{verb} left out {missing}:\n{err}"
