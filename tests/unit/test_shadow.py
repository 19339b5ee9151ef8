"""Shadow rules: the candidate's commands beside the live ones, from the same decoded
event, counted by rule and difference, logged with ids and field paths only, at most one
line per rule per second; the live commands are what is returned, whatever the candidate does."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.convert import record_commands
from bridge.errors import DecodeError, MappingError
from bridge.metrics import Metrics
from bridge.model import Record
from bridge.rules.difference import difference, mapped, matched
from bridge.rules.mapping import Alike, compile_rules
from bridge.runtime.shadow import Shadow
from tests.recordpath import load_config, record
from tests.support import sms_event


def counted(metrics: Metrics, rule: str, difference: str) -> float:
    labels = {"rule": rule, "difference": difference}
    return metrics.registry.get_sample_value("intilery_bridge_shadow_commands_total", labels) or 0.0


def test_the_candidate_is_counted_beside_the_live_rules_and_logged_once_a_second(tmp_path: Path) -> None:
    loaded = load_config(tmp_path, None)
    rules = loaded.config.model_dump(mode="json")["rules"]
    rules[0]["emit"]["assetId"] = "ASSET-SHADOW"  # abandoned-sms: changed
    rules[0]["emit"]["secret"] = "{{ customer.id }}"  # a field only the candidate sends
    candidate, problems = compile_rules(rules, ["bookings"])
    assert problems == []
    metrics, now = Metrics(), [100.0]
    shadow = Shadow(candidate, metrics, clock=lambda: now[0])
    with capture_logs() as logs:
        for offset in range(3):
            commands = record_commands(
                loaded.decoder, loaded.mapper, record(offset, sms_event(offset, 5)), beside=shadow
            )
            assert [c.body["assetId"] for c in commands] == ["ASSET-SMS"]  # the live rules' commands
        now[0] += 1.0
        record_commands(loaded.decoder, loaded.mapper, record(3, sms_event(3, 5)), beside=shadow)
        viewed = {"type": "booking_viewed", "seq": 4, "customer": {"id": "C-4"}, "booking": {"id": "B-4"}}
        record_commands(loaded.decoder, loaded.mapper, record(4, viewed), beside=shadow)
    assert counted(metrics, "abandoned-sms", "changed") == 4
    assert counted(metrics, "viewed", "unchanged") == 1
    lines = [entry for entry in logs if entry["event"] == "shadow_difference"]
    assert [line["offset"] for line in lines] == [0, 3]  # one per rule per second
    assert lines[0]["fields"] == ["body.assetId", "body.secret"]  # paths, never values
    assert lines[0]["userId"] == "C-0" and lines[0]["shadow_rules_version"] == candidate.version
    assert "ASSET-SHADOW" not in str(lines) and "ASSET-SMS" not in str(lines)


def test_a_record_the_live_rules_cannot_map_is_still_shadowed_and_still_fails(tmp_path: Path) -> None:
    loaded = load_config(tmp_path, None)
    rules = loaded.config.model_dump(mode="json")["rules"]
    rules[0]["emit"]["userId"] = "C-fixed"  # the live rule needs customer.id; the candidate does not
    candidate, _ = compile_rules(rules, ["bookings"])
    metrics = Metrics()
    shadow = Shadow(candidate, metrics)
    event = sms_event(0, 5)
    del event["customer"]
    with pytest.raises(MappingError, match="userId"):
        record_commands(loaded.decoder, loaded.mapper, record(0, event), beside=shadow)
    assert counted(metrics, "abandoned-sms", "added") == 1  # the candidate would send it
    with pytest.raises(DecodeError):  # undecodable: the same for both, nothing to compare
        record_commands(
            loaded.decoder,
            loaded.mapper,
            Record("bookings", 0, 1, None, b"not json", [], None),
            beside=shadow,
        )
    assert counted(metrics, "abandoned-sms", "added") == 1


def test_rules_defined_alike_are_not_run_again_and_the_counts_are_a_full_mappings(tmp_path: Path) -> None:
    def rule(name: str, when: str | None, **emit: str) -> dict[str, Any]:
        return {"name": name, **({"when": when} if when else {}), "emit": {"userId": "{{ id }}", **emit}}

    live, _ = compile_rules(
        [
            rule("a", "type == 'x'", event="send_sms", assetId="A"),
            rule("b", "type == 'x'", event="b"),
            rule("c", "type == 'y'", event="identify"),
            rule("d", None, event="d"),
        ],
        ["bookings"],
    )
    candidate, _ = compile_rules(
        [
            rule("a", "type == 'x'", event="send_sms", assetId="A"),  # alike: the live command is taken
            rule("b", "type == 'x'", event="b", userId="{{ extra }}"),  # condition alike: run where it held
            rule("c", "type == 'x'", event="identify"),  # another condition: always run
            rule("e", None, event="e"),  # d removed, e added
        ],
        ["bookings"],
    )
    assert candidate.alike(live) == Alike(frozenset({"a"}), frozenset({"b"}))
    events = [
        {"type": "x", "id": "C-1", "extra": "n"},
        {"type": "x", "id": "C-2"},  # the candidate's b needs extra: it dead-letters the record
        {"type": "y", "id": "C-3"},
        {"type": "z", "id": "C-4"},
        {"type": "x"},  # no id: the live rules dead-letter it
    ]
    expected: Counter[tuple[str, str]] = Counter()
    for offset, event in enumerate(events):  # both sets mapping every rule, as `diff` does
        meta = record(offset, event).meta()
        old, new = mapped(live.map, dict(event), meta), mapped(candidate.map, dict(event), meta)
        expected.update((name, difference(o, n)) for name, o, n in matched(old, new))
    metrics, decoder = Metrics(), load_config(tmp_path, None).decoder
    shadow = Shadow(candidate, metrics)
    for offset, event in enumerate(events):
        with contextlib.suppress(MappingError):
            record_commands(decoder, live, record(offset, event), beside=shadow)
    assert sorted(metrics.rules.shadow_commands.counts.items()) == sorted(expected.items())
    assert expected[("b", "changed")] == 1 and expected[("b", "removed")] == 1  # the two ways b differs
