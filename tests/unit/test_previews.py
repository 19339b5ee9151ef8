"""The previews tell what `run` would do: `map` and `test` skip what `run` would skip
(a rule's max_age, on_missing: skip), say why per line, and name the fields templates
did not find; `check --tests` names the template paths no case supplies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import run_cli

RULES = [
    {
        "name": "greet",
        "emit": {"event": "send_sms", "userId": "{{ id }}", "assetId": "A", "greeting": "Hi {{ name }}!"},
    },
    {
        "name": "greet-or-nothing",
        "on_missing": "skip",
        "emit": {"event": "send_sms", "userId": "{{ id }}", "assetId": "B", "greeting": "Hi {{ name }}!"},
    },
    {
        "name": "fresh-only",
        "max_age": "2h",
        "emit": {"event": "send_sms", "userId": "{{ id }}", "assetId": "C", "timestamp": "{{ at }}"},
    },
]
OLD = "2020-01-01T00:00:00Z"


def config(tmp_path: Path, rules: list[dict[str, Any]] = RULES) -> str:
    """A whole configuration (check reads it all), ``rules`` its rules."""
    path = tmp_path / "rules.yaml"
    document = {
        "kafka": {"bootstrap.servers": "localhost:9092", "group.id": "previews"},
        "source": {"topics": ["bookings"]},
        "intilery": {
            "url": "http://localhost:8080",
            "client_id": "c",
            "account_id": "a",
            "brand_id": "B",
            "auth_token": "${PREVIEWS_TOKEN}",
        },
        "rules": rules,
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


def events(tmp_path: Path, *lines: dict[str, Any]) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_map_skips_what_run_would_and_says_why(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`map` printed the stale and the incomplete commands as if they would be sent, and
    "Hi !" bodies without a word."""
    file = events(tmp_path, {"id": "C-1", "at": OLD})
    code, out, err = run_cli(capsys, "map", "--config", config(tmp_path), file)
    assert code == 0
    assert [line.split('"rule": ')[1].split(",")[0] for line in out.splitlines()] == ['"greet"']
    assert "line 1: rule greet: fields absent from the event, left out: name" in err
    assert "line 1: rule greet-or-nothing: not sent, incomplete: fields absent from the event: name" in err
    assert "line 1: rule fresh-only: not sent, stale: older than 2h (max_age)" in err
    assert err.splitlines()[-1] == "map: 1 event read, 1 command, 0 matched no rule, 0 failed, 2 not sent"
    code, out, err = run_cli(capsys, "map", "--config", config(tmp_path), "--ignore-max-age", file)
    assert code == 0 and len(out.splitlines()) == 2 and "stale" not in err


def test_map_counts_a_dead_lettered_hole_as_a_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rules = [{**RULES[0], "on_missing": "dead_letter"}]
    code, out, err = run_cli(
        capsys, "map", "--config", config(tmp_path, rules), events(tmp_path, {"id": "C"})
    )
    assert code == 1 and out == ""
    assert "line 1: mapping: rule greet: fields absent from the event: name (on_missing: dead_letter)" in err


def cases(tmp_path: Path, *listed: dict[str, Any]) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"tests": list(listed)}))
    return str(path)


def test_a_case_fixes_now_so_max_age_can_be_tested(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rules = [RULES[2]]
    fresh = {"event": "send_sms", "userId": "C", "assetId": "C", "timestamp": "2026-11-21T18:00:00.000Z"}
    event = {"id": "C", "at": fresh["timestamp"]}
    an_hour = {"name": "an hour old", "now": "2026-11-21T19:00:00Z", "event": event}
    three_hours = {"name": "three hours old", "now": "2026-11-21T21:00:00Z", "event": event}
    listed = [{**an_hour, "expect": [{"rule": "fresh-only", "body": fresh}]}, {**three_hours, "expect": []}]
    code, out, _ = run_cli(capsys, "test", "--config", config(tmp_path, rules), cases(tmp_path, *listed))
    assert code == 0, out
    assert "note: rule fresh-only: not sent, stale: older than 2h (max_age)" in out
    bad = [{**listed[0], "now": "yesterday"}]
    code, _, err = run_cli(capsys, "test", "--config", config(tmp_path, rules), cases(tmp_path, *bad))
    assert code == 2 and "now" in err


def test_check_tests_names_the_template_paths_no_case_supplies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = {"event": "send_sms", "userId": "C", "assetId": "A"}
    listed = [
        {
            "name": "no name",
            "event": {"id": "C"},
            "match": "subset",
            "expect": [{"rule": "greet", "body": body}],
        }
    ]
    path = config(tmp_path, [RULES[0]])
    code, out, err = run_cli(capsys, "check", "--config", path, "--tests", cases(tmp_path, *listed))
    assert code == 0 and "OK" in out
    assert f"{path}: warning: rule greet: no test case supplies {{{{ name }}}}" in err
    assert "supplies {{ id }}" not in err
    code, _, _ = run_cli(capsys, "check", "--strict", "--config", path, "--tests", cases(tmp_path, *listed))
    assert code == 1


def test_diff_compares_what_run_would_send(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A candidate that adds a max_age was "unchanged" though it would send nothing."""
    timed = {**RULES[2], "max_age": None}
    (tmp_path / "now").mkdir()
    (tmp_path / "next").mkdir()
    current, candidate = config(tmp_path / "now", [timed]), config(tmp_path / "next", [RULES[2]])
    file = events(tmp_path, {"id": "C-1", "at": OLD})
    args = ("diff", "--config", current, "--candidate", candidate, file, "--output", "json")
    code, out, _ = run_cli(capsys, *args)
    assert code == 1 and json.loads(out)["rules"]["fresh-only"]["removed"] == 1
    code, out, _ = run_cli(capsys, *args, "--ignore-max-age")
    assert code == 0 and json.loads(out)["rules"]["fresh-only"]["unchanged"] == 1
