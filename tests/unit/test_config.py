"""The configuration loader: ${ENV} expansion and errors that name file, rule and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import load
from bridge.config import expand_env, load_config
from bridge.errors import ConfigError
from bridge.source import consumer_config

GOOD: dict[str, Any] = {
    "kafka": {"bootstrap.servers": "${BOOT:-localhost:9092}", "group.id": "g"},
    "source": {"topics": ["bookings"]},
    "intilery": {"client_id": "Acme", "account_id": "Acme", "auth_token": "${TOKEN}"},
    "delivery": {"max_in_flight": "${INFLIGHT:-8}", "dead_letter_topic": "dlq"},
    "rules": [
        {"name": "abandoned-sms", "emit": {"event": "send_sms", "userId": "{{ c }}", "assetId": "A"}},
    ],
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def problems(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        config = load_config(path, env={"TOKEN": "t"} if env is None else env)
        from bridge.mapping import compile_rules

        compile_rules(config, str(path))
    return info.value.problems


def test_env_expansion_with_defaults_and_types(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={"TOKEN": "s3cret", "INFLIGHT": "12"})
    assert config.kafka["bootstrap.servers"] == "localhost:9092"
    assert config.delivery.max_in_flight == 12
    assert config.intilery.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_missing_variable_is_named_with_its_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"{path}: intilery.auth_token: environment variable TOKEN is not set"]


def test_lenient_env_expands_missing_to_empty(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={}, strict_env=False)
    assert config.intilery.auth_token.get_secret_value() == ""


def test_dollar_dollar_escapes() -> None:
    assert expand_env("cost $${X} ${Y}", {"Y": "1"}, []) == "cost ${X} 1"


def test_brand_defaults_to_account_upper_and_endpoint_cases(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={"TOKEN": "t"})
    assert config.intilery.endpoint("track") == "https://tracking.intilery.com/track/acme/acme/ACME/v1/track"


def test_unknown_key_and_wrong_type_name_the_rule(tmp_path: Path) -> None:
    data = {**GOOD, "rules": [{**GOOD["rules"][0], "when": 5, "emitt": {}}]}
    lines = problems(tmp_path, data)
    assert any("rules[0] (abandoned-sms).when: Input should be a valid string" in line for line in lines)
    assert any("rules[0] (abandoned-sms).emitt: unknown key" in line for line in lines)
    assert all(line.startswith(str(tmp_path / "bridge.yaml") + ": ") for line in lines)


def test_required_field_literal_missing(tmp_path: Path) -> None:
    data = {**GOOD, "rules": [GOOD["rules"][0], {"name": "x", "emit": {"event": "send_sms", "userId": "u"}}]}
    assert problems(tmp_path, data) == [
        f"{tmp_path / 'bridge.yaml'}: rules[1] (x).emit.assetId: required for send_sms"
    ]


def test_bad_jmespath_in_when_and_template(tmp_path: Path) -> None:
    rule = {"name": "r", "when": "type ==", "emit": {"event": "x", "userId": "{{ a[ }}"}}
    lines = problems(tmp_path, {**GOOD, "rules": [rule]})
    assert any("rules[0] (r).when: invalid JMESPath 'type =='" in line for line in lines)
    assert any("rules[0] (r).emit.userId: invalid JMESPath 'a['" in line for line in lines)


def test_start_journey_needs_journey_id(tmp_path: Path) -> None:
    rule = {"name": "j", "emit": {"event": "start_journey", "userId": "u", "properties": {}}}
    assert problems(tmp_path, {**GOOD, "rules": [rule]})[0].endswith(
        "rules[0] (j).emit.properties.journeyIdToTrigger: required for start_journey"
    )


def test_duplicate_rule_and_unknown_topic(tmp_path: Path) -> None:
    rule = GOOD["rules"][0]
    lines = problems(tmp_path, {**GOOD, "rules": [rule, rule]})
    assert lines == [f"{tmp_path / 'bridge.yaml'}: rules[1] (abandoned-sms).name: duplicate rule name"]
    lines = problems(tmp_path, {**GOOD, "rules": [{**rule, "topics": ["nope"]}]})
    assert lines[0].endswith("rules[0] (abandoned-sms).topics: not in source.topics: nope")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "kafka: [unclosed\n")
    assert lines[0].startswith(f"{tmp_path / 'bridge.yaml'}: invalid YAML (line ")


def test_missing_sections_and_bootstrap(tmp_path: Path) -> None:
    lines = problems(tmp_path, {"kafka": {"group.id": "g"}, "rules": []})
    joined = "\n".join(lines)
    assert "source: Field required" in joined and "intilery: Field required" in joined
    assert "rules: List should have at least 1 item" in joined


def test_auto_commit_refused() -> None:
    with pytest.raises(ConfigError) as info:
        consumer_config({"bootstrap.servers": "x", "group.id": "g", "enable.auto.commit": True}, "f.yaml")
    assert "kafka.enable.auto.commit: must not be true" in info.value.problems[0]
    conf = consumer_config({"bootstrap.servers": "x", "group.id": "g"}, "f.yaml")
    assert conf["enable.auto.offset.store"] is False and conf["enable.auto.commit"] is False


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTILERY_AUTH_TOKEN", "t")
    config, mapper = load(str(Path(__file__).parents[2] / "examples" / "bridge.yaml"))
    assert len(mapper) == len(config.rules) == 7
