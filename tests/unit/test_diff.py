"""`diff` offline: both rule sets over the same events, commands matched by record, rule
and position; the counts against ones worked out by hand; exit 0, 1 or 2."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.support import base_config, run_cli, sms_event


def configs(tmp_path: Path) -> tuple[Path, Path]:
    """The current rules, and a candidate that changes one asset, renames one rule,
    drops another and adds a new one."""
    where: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")
    current = base_config(where, "http://127.0.0.1:9", "g")
    candidate = base_config(where, "http://127.0.0.1:9", "g")
    rules = {rule["name"]: rule for rule in candidate["rules"]}
    rules["abandoned-sms"]["emit"]["assetId"] = "ASSET-SMS-2"  # changed
    rules["identify"]["name"] = "identify-customer"  # renamed: removed plus added
    del rules["print"]  # removed
    rules["viewed-too"] = {**rules["viewed"], "name": "viewed-too"}  # added beside viewed
    candidate["rules"] = list(rules.values())
    paths = tmp_path / "current.yaml", tmp_path / "candidate.yaml"
    for path, config in zip(paths, (current, candidate), strict=True):
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def events(tmp_path: Path) -> Path:
    lines = [
        sms_event(0, 3),  # abandoned-sms: changed
        sms_event(1, 3),  # changed
        {"type": "customer_registered", "seq": 2, "customer": {"id": "C-9", "email": "a@example.com"}},
        {"type": "letter", "seq": 3, "customer": {"id": "C-8"}},  # print: removed
        {"type": "booking_viewed", "seq": 4, "customer": {"id": "C-7"}, "booking": {"id": "B-4"}},
        {"type": "nothing", "seq": 5, "customer": {"id": "C-6"}},  # no rule either way
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    return path


def test_diff_counts_what_the_candidate_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current, candidate = configs(tmp_path)
    args = ("diff", "--config", str(current), "--candidate", str(candidate), str(events(tmp_path)))
    code, out, _ = run_cli(capsys, *args, "--output", "json")
    assert code == 1
    result = json.loads(out)
    assert result["records"] == 7
    # now: sms x2, identify, print, viewed = 5; candidate: sms x2, identify-customer, viewed, viewed-too = 5
    assert result["commands"] == {
        "current": 5,
        "candidate": 5,
        "added": 2,
        "removed": 2,
        "changed": 2,
        "unchanged": 1,
    }
    assert result["customers"] == {"affected": 5}  # C-0, C-1 (changed), C-9 (renamed), C-8, C-7 (added)
    assert result["rules"] == {
        "abandoned-sms": {"added": 0, "removed": 0, "changed": 2, "unchanged": 0},
        "identify": {"added": 0, "removed": 1, "changed": 0, "unchanged": 0},
        "identify-customer": {"added": 1, "removed": 0, "changed": 0, "unchanged": 0},
        "print": {"added": 0, "removed": 1, "changed": 0, "unchanged": 0},
        "viewed": {"added": 0, "removed": 0, "changed": 0, "unchanged": 1},
        "viewed-too": {"added": 1, "removed": 0, "changed": 0, "unchanged": 0},
    }
    # in the files' order (the candidate's, then the rules it drops), not alphabetically
    in_order = ["abandoned-sms", "identify-customer", "viewed", "viewed-too", "identify", "print"]
    assert list(result["rules"]) == in_order
    assert result["dead_letters"] == {"current": 1, "candidate": 1}
    first = result["samples"][0]
    assert (first["offset"], first["rule"], first["difference"]) == (0, "abandoned-sms", "changed")
    assert first["fields"] == ['body.assetId: expected "ASSET-SMS", got "ASSET-SMS-2"']
    assert len(result["samples"]) == 6  # each of the 2 + 2 + 2, under --samples' default of 5 a kind

    code, out, _ = run_cli(capsys, *args, "--samples", "1")
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("diff: 7 records; commands 5 now, 5 with the candidate: 2 added")
    assert "  rule abandoned-sms: 0 added, 0 removed, 2 changed, 0 unchanged" in lines
    changed = lines.index("CHANGED  bookings[0]@0: rule abandoned-sms")
    assert lines[changed : changed + 2] == [
        "CHANGED  bookings[0]@0: rule abandoned-sms",
        '      body.assetId: expected "ASSET-SMS", got "ASSET-SMS-2"',
    ]
    # one sample of each kind (only the first kind's were shown once it had filled the samples)
    shown = [line.split()[0] for line in lines if line.split()[0] in ("ADDED", "REMOVED", "CHANGED")]
    assert sorted(shown) == ["ADDED", "CHANGED", "REMOVED"]


def test_the_same_rules_differ_in_nothing_and_a_bad_candidate_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current, candidate = configs(tmp_path)
    code, out, _ = run_cli(
        capsys, "diff", "--config", str(current), "--candidate", str(current), str(events(tmp_path))
    )
    assert code == 0 and "0 added, 0 removed, 0 changed, 5 unchanged" in out
    candidate.write_text("rules: [\n")
    code, out, err = run_cli(capsys, "diff", "--config", str(current), "--candidate", str(candidate), "-")
    assert code == 2 and out == "" and "invalid YAML" in err and len(err.splitlines()) == 1
    code, _, err = run_cli(
        capsys, "diff", "--config", str(current), "--candidate", str(current), "--last", "1h", "events.jsonl"
    )
    assert code == 2 and err.strip() == "diff: give FILE or a window (--from, --last), not both"
