"""Reloading the rules (SIGHUP, run --watch): validated as check validates, refused when
anything but the rules changed, the old rules going on; the rules' version."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from bridge.metrics import Metrics
from bridge.ops.loading import load
from bridge.ops.reload import Reloader, restart_needed
from bridge.rules.mapping import Mapper, rules_version
from tests.support import TOKEN, base_config, run_cli, until


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_INTILERY_TOKEN", TOKEN)


def config() -> dict[str, Any]:
    where: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")
    return base_config(where, "http://127.0.0.1:9", "g")


def write(path: Path, document: dict[str, Any] | str) -> Path:
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return path


class Swaps:
    def __init__(self) -> None:
        self.mappers: list[Mapper] = []

    def __call__(self, mapper: Mapper) -> None:
        self.mappers.append(mapper)


def reloader(path: Path, **options: Any) -> tuple[Reloader, Swaps, Metrics]:
    swaps, metrics = Swaps(), Metrics()
    running = load(str(path))
    return Reloader(str(path), running.config, swaps, metrics, **options), swaps, metrics


def reloads(metrics: Metrics, result: str) -> float:
    return (
        metrics.registry.get_sample_value("intilery_bridge_config_reloads_total", {"result": result}) or 0.0
    )


def test_the_rules_version_follows_the_rules_only() -> None:
    rules = config()["rules"]
    assert rules_version(rules) == rules_version(yaml.safe_load(yaml.safe_dump(rules)))
    assert len(rules_version(rules)) == 12
    changed = [{**rules[0], "emit": {**rules[0]["emit"], "assetId": "ASSET-SMS-2"}}, *rules[1:]]
    assert rules_version(changed) != rules_version(rules)


def test_only_the_rules_reload_the_rest_names_each_key(tmp_path: Path) -> None:
    running = load(str(write(tmp_path / "a.yaml", config()))).config
    candidate = config()
    candidate["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
    assert restart_needed(running, load(str(write(tmp_path / "b.yaml", candidate))).config) == []
    candidate["kafka"]["group.id"] = "other"
    candidate["delivery"]["max_in_flight"] = 3
    assert restart_needed(running, load(str(write(tmp_path / "c.yaml", candidate))).config) == [
        "delivery.max_in_flight: changed, and only rules reload: restart the bridge for it",
        "kafka.group.id: changed, and only rules reload: restart the bridge for it",
    ]


def test_an_accepted_reload_puts_the_new_rules_in_force(tmp_path: Path) -> None:
    path = write(tmp_path / "bridge.yaml", config())
    reload, swaps, metrics = reloader(path)
    changed = config()
    changed["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
    write(path, changed)
    with capture_logs() as logs:
        assert asyncio.run(reload.reload())
    (mapper,) = swaps.mappers
    assert mapper.version == rules_version(changed["rules"]) and len(mapper) == len(changed["rules"])
    (line,) = [entry for entry in logs if entry["event"] == "config_reloaded"]
    assert line["rules_version"] == mapper.version and line["rules"] == len(changed["rules"])
    assert reloads(metrics, "ok") == 1 and reloads(metrics, "failed") == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: "rules: [", "invalid YAML"),
        (lambda c: {**c, "rules": [{**c["rules"][0], "when": "type =="}]}, "rules[0] (abandoned-sms).when"),
        (lambda c: {**c, "kafka": {**c["kafka"], "group.id": "other"}}, "kafka.group.id: changed"),
        # These two raised past the reloader (ValueError, PydanticSerializationError): it died.
        (
            lambda c: {**c, "intilery": {**c["intilery"], "auth_token": "${file:/run/a\x00b}"}},
            "intilery.auth_token: cannot read secret file",
        ),
        (lambda c: {**c, "rules": [{**c["rules"][0], "emit": deep(300)}]}, "emit: nested more than 32"),
    ],
    ids=["broken YAML", "a broken rule", "a group changed", "a NUL in a file's path", "an emit 300 deep"],
)
def test_a_refused_reload_keeps_the_old_rules(tmp_path: Path, change: Any, expected: str) -> None:
    path = write(tmp_path / "bridge.yaml", config())
    reload, swaps, metrics = reloader(path)
    write(path, change(config()))
    with capture_logs() as logs:
        assert not asyncio.run(reload.reload())
    assert swaps.mappers == []
    (line,) = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    assert any(expected in problem and problem.startswith(str(path)) for problem in line["problems"])
    assert reloads(metrics, "failed") == 1 and reloads(metrics, "ok") == 0


def test_a_rule_problem_does_not_hide_a_change_that_needs_a_restart(tmp_path: Path) -> None:
    """A SIGHUP with a broken rule and a new group.id reported only the rule."""
    path = write(tmp_path / "bridge.yaml", config())
    reload, swaps, _ = reloader(path)
    broken = config()
    broken["rules"][0]["maxAge"] = "2h"
    write(path, broken)  # the rule only: nothing else is said to need a restart
    with capture_logs() as logs:
        assert not asyncio.run(reload.reload())
    (line,) = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    assert line["problems"] == [
        f"{path}: rules[0] (abandoned-sms).maxAge: unknown key; did you mean max_age?"
    ]
    broken["kafka"]["group.id"] = "other"
    broken["delivery"]["max_in_flight"] = "many"  # refused itself: not compared
    write(path, broken)
    with capture_logs() as logs:
        assert not asyncio.run(reload.reload())
    (line,) = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    problems = line["problems"]
    assert any("rules[0] (abandoned-sms).maxAge: unknown key" in problem for problem in problems)
    assert f"{path}: kafka.group.id: changed, and only rules reload: restart the bridge for it" in problems
    assert any("delivery.max_in_flight" in problem for problem in problems) and swaps.mappers == []
    assert not any(problem.startswith(f"{path}: delivery.") and "changed" in problem for problem in problems)


def deep(levels: int) -> dict[str, Any]:
    body: dict[str, Any] = {"event": "send_sms", "userId": "{{ customer.id }}", "assetId": "A"}
    inner = body
    for _ in range(levels):
        inner["nested"] = inner = {}
    return body


def test_a_reload_that_fails_anywhere_is_refused_and_the_next_one_applies(tmp_path: Path) -> None:
    path = write(tmp_path / "bridge.yaml", config())
    reload, swaps, metrics = reloader(path)
    failing = [RuntimeError("the swap failed")]

    def use_rules(mapper: Mapper) -> None:
        if failing:
            raise failing.pop()
        swaps(mapper)

    reload = Reloader(str(path), load(str(path)).config, use_rules, metrics)
    with capture_logs() as logs:
        assert not asyncio.run(reload.reload())
        assert asyncio.run(reload.reload())
    (line,) = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    assert line["problems"] == [f"{path}: cannot be reloaded: RuntimeError"]
    assert len(swaps.mappers) == 1 and reloads(metrics, "failed") == 1 and reloads(metrics, "ok") == 1


def test_a_reload_whose_rule_tests_fail_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bridge.yaml", config())
    tests = tmp_path / "tests.yaml"
    event = {"type": "booking_abandoned", "channel": "sms", "seq": 1, "occurredAt": "2026-11-01T00:00:00Z"}
    event |= {"customer": {"id": "C-1"}, "booking": {"id": "B-1", "value": 1}}
    body = {"assetId": "ASSET-SMS"}
    case = {
        "name": "sms",
        "match": "subset",
        "event": event,
        "expect": [{"rule": "abandoned-sms", "body": body}],
    }
    write(tests, {"tests": [case]})
    reload, swaps, _ = reloader(path, tests=[str(tests)])
    changed = config()
    changed["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
    write(path, changed)
    with capture_logs() as logs:
        assert not asyncio.run(reload.reload())
    (line,) = [entry for entry in logs if entry["event"] == "config_reload_failed"]
    assert swaps.mappers == [] and any("assetId" in problem for problem in line["problems"])
    write(path, config())  # the tests pass again
    assert asyncio.run(reload.reload()) and len(swaps.mappers) == 1


def test_watching_sees_a_config_map_s_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as ``bridge.yaml -> ..data/bridge.yaml`` and swaps the
    ``..data`` symlink to a new directory at once."""
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
    write(tmp_path / "v1" / "bridge.yaml", config())
    changed = config()
    changed["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
    write(tmp_path / "v2" / "bridge.yaml", changed)
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "bridge.yaml").symlink_to("..data/bridge.yaml")
    reload, swaps, _ = reloader(tmp_path / "bridge.yaml", watch=True)

    looked: list[object] = []
    digest = reload._digest

    def looking() -> tuple[str | None, ...]:  # each time the watcher reads the file
        looked.append(1)
        return digest()

    reload._digest = looking  # type: ignore[method-assign]

    async def scenario() -> None:
        watching = asyncio.create_task(reload.run())
        await until(lambda: len(looked) >= 2, 10, "the watcher to look at the file twice")
        assert swaps.mappers == []  # nothing changed yet
        (tmp_path / "..data_tmp").symlink_to("v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        await until(lambda: bool(swaps.mappers), 10, "the watcher to swap the rules in")
        watching.cancel()

    asyncio.run(scenario())
    (mapper,) = swaps.mappers
    assert mapper.version == rules_version(changed["rules"])


def test_check_and_map_end_such_files_with_a_line_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = config()
    document["rules"][0]["emit"] = deep(300)
    path = write(tmp_path / "bridge.yaml", document)
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "booking_abandoned"}\n')
    code, _, err = run_cli(capsys, "check", "--config", str(path))
    assert code == 1 and "emit: nested more than 32 levels deep" in err and "a bug" not in err, err
    code, _, err = run_cli(capsys, "map", "--config", str(path), str(events))
    assert code not in (0, 5) and "emit: nested more than 32 levels deep" in err and "a bug" not in err, err
