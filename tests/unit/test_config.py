"""The configuration loader: ${ENV} expansion and errors that name file, rule and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import expand_env
from bridge.errors import ConfigError
from bridge.kafka.consumer import consumer_config, librdkafka_problems
from bridge.logs import redact
from bridge.ops.loading import load, load_offline
from tests.support import run_cli

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


def problems(tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch | None = None) -> list[str]:
    """Every problem `load` (what run and check use) reports for ``data``."""
    path = write(tmp_path, data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKEN", "t")
        with pytest.raises(ConfigError) as info:
            load(str(path))
    return info.value.problems


def test_env_expansion_with_defaults_and_types(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, GOOD)), env={"TOKEN": "s3cret", "INFLIGHT": "12"}).config
    assert config.kafka["bootstrap.servers"] == "localhost:9092"
    assert config.delivery.max_in_flight == 12
    assert config.intilery.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_missing_variable_is_named_with_its_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        load(str(path), env={})
    assert info.value.problems == [f"{path}: intilery.auth_token: environment variable TOKEN is not set"]


def test_an_unset_secret_is_only_noted_where_secrets_may_be_missing(tmp_path: Path) -> None:
    """What `check` does without --require-env: the secret expands to empty, and a note."""
    path, notes = write(tmp_path, GOOD), []
    config = load(str(path), notes, env={}).config
    assert config.intilery.auth_token.get_secret_value() == ""
    assert notes == ["intilery.auth_token: environment variable TOKEN is not set"]


def test_dollar_dollar_escapes() -> None:
    assert expand_env("cost $${X} ${Y}", {"Y": "1"}, []) == "cost ${X} 1"


def test_brand_defaults_to_account_upper_and_endpoint_cases(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, GOOD)), env={"TOKEN": "t"}).config
    assert config.intilery.endpoint("track") == "https://tracking.intilery.com/track/acme/acme/ACME/v1/track"


def test_unknown_key_and_wrong_type_name_the_rule(tmp_path: Path) -> None:
    data = {**GOOD, "rules": [{**GOOD["rules"][0], "when": 5, "emitt": {}}]}
    lines = problems(tmp_path, data)
    assert any("rules[0] (abandoned-sms).when: must be text" in line for line in lines)
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
    assert "source: required" in joined and "intilery: required" in joined
    assert "rules: List should have at least 1 item" in joined


def test_auto_commit_refused(tmp_path: Path) -> None:
    kafka = {"bootstrap.servers": "x", "group.id": "g", "enable.auto.commit": True}
    assert problems(tmp_path, {**GOOD, "kafka": kafka}) == [
        f"{tmp_path / 'bridge.yaml'}: kafka.enable.auto.commit: must not be true; "
        "the bridge commits offsets after delivery"
    ]
    conf = consumer_config({"bootstrap.servers": "x", "group.id": "g"})
    assert conf["enable.auto.offset.store"] is False and conf["enable.auto.commit"] is False


def test_a_rebalance_grace_near_the_poll_interval_is_refused(tmp_path: Path) -> None:
    kafka = {"bootstrap.servers": "x", "group.id": "g", "max.poll.interval.ms": 60000}
    delivery = {**GOOD.get("delivery", {}), "rebalance_grace_s": 60}
    assert problems(tmp_path, {**GOOD, "kafka": kafka, "delivery": delivery}) == [
        f"{tmp_path / 'bridge.yaml'}: delivery.rebalance_grace_s: must be shorter than "
        "kafka.max.poll.interval.ms (60000 ms): the group waits for it in a rebalance"
    ]
    shorter = {**delivery, "rebalance_grace_s": 29}  # a commit's wait and the rejoin fit in the rest
    path = write(tmp_path, {**GOOD, "kafka": kafka, "delivery": shorter})
    loaded = load(str(path), env={"TOKEN": "t"}).config
    assert loaded.delivery.rebalance_grace_s == 29


def test_classic_group_settings_refused_with_kip848(tmp_path: Path) -> None:
    kafka = {"bootstrap.servers": "x", "group.id": "g", "group.protocol": "consumer"}
    assert load(str(write(tmp_path, {**GOOD, "kafka": kafka})), env={"TOKEN": "t"}).config.kafka == kafka
    classic = {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    lines = problems(tmp_path, {**GOOD, "kafka": kafka | classic})
    assert [line.split(": ")[1] for line in lines] == [f"kafka.{key}" for key in classic]
    assert all("not allowed with group.protocol: consumer (KIP-848)" in line for line in lines)
    classic_group = kafka | classic | {"group.protocol": "classic"}
    assert (
        load(str(write(tmp_path, {**GOOD, "kafka": classic_group})), env={"TOKEN": "t"}).config.kafka
        == classic_group
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    rules = [
        GOOD["rules"][0],
        GOOD["rules"][0],
        {"name": "t", "topics": ["nope"], "emit": {"event": "x", "userId": "u"}},
        {"name": "noemit"},
        {"name": "j", "when": "a ==", "emit": {"event": "send_sms", "userId": "u", "timestamp": "yesterday"}},
    ]
    data = {**GOOD, "kafka": {"group.id": "g"}, "rules": rules}
    lines = [line.split(": ", 1)[1] for line in problems(tmp_path, data)]
    assert sorted(lines) == sorted(
        [
            "kafka.bootstrap.servers: required",
            "rules[1] (abandoned-sms).name: duplicate rule name",
            "rules[2] (t).topics: not in source.topics: nope",
            "rules[3] (noemit).emit: required",
            "rules[4] (j).when: invalid JMESPath 'a ==': Incomplete expression",
            "rules[4] (j).emit.assetId: required for send_sms",
            "rules[4] (j).emit.timestamp: not an ISO-8601 time or epoch number: 'yesterday'",
        ]
    )


def test_missing_variable_hides_no_other_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {**GOOD, "intilery": {**GOOD["intilery"], "url": "${NO_SUCH_URL}"}, "rules": [{"name": "x"}]}
    path = write(tmp_path, data)
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.delenv("NO_SUCH_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.problems == [
        f"{path}: intilery.url: environment variable NO_SUCH_URL is not set",
        f"{path}: rules[0] (x).emit: required",
    ]


def test_offline_load_needs_only_source_and_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        **GOOD,
        "intilery": {
            "url": "${NO_URL}",
            "client_id": "${NO_ID}",
            "account_id": "a",
            "auth_token": "${NO_TOKEN}",
        },
    }
    for name in ("NO_URL", "NO_ID", "NO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    source, mapper = load_offline(str(write(tmp_path, data)))
    assert source.topic_names == ["bookings"] and len(mapper) == 1


def test_empty_variable_takes_the_default() -> None:
    assert expand_env("${E:-fallback}", {"E": ""}, []) == "fallback"
    assert expand_env("${E}", {"E": ""}, []) == ""


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTILERY_AUTH_TOKEN", "t")
    config, mapper, _ = load(str(Path(__file__).parents[2] / "examples" / "bridge.yaml"))
    assert len(mapper) == len(config.rules) == 7


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5), (45, 45)],
)
def test_durations(text: object, seconds: float) -> None:
    from bridge.config import parse_duration

    assert parse_duration(text) == seconds


def test_bad_max_age_names_the_rule(tmp_path: Path) -> None:
    rule = {**GOOD["rules"][0], "max_age": "two hours"}
    assert problems(tmp_path, {**GOOD, "rules": [rule]}) == [
        f"{tmp_path / 'bridge.yaml'}: rules[0] (abandoned-sms).max_age: "
        "a duration such as 90s, 15m, 2h, 1d or 1h30m"
    ]


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("Tok3n-From-File\n")
    expanded = expand_env({"a": f"${{file:{secret}}}", "b": "x-${file: " + str(secret) + "}-y"}, {}, [])
    assert expanded == {"a": "Tok3n-From-File", "b": "x-Tok3n-From-File-y"}
    problems: list[str] = []
    assert expand_env({"intilery": {"auth_token": "${file:/run/secrets/none}"}}, {}, problems) == {
        "intilery": {"auth_token": ""}
    }
    assert problems == [
        "intilery.auth_token: cannot read secret file /run/secrets/none: No such file or directory"
    ]
    assert expand_env({"a": "$${file:/x}"}, {}, []) == {"a": "${file:/x}"}


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_bytes(yaml.safe_dump(GOOD).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    [line] = info.value.problems
    assert line.startswith(f"{path}: not UTF-8 text (byte ")


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    lines = problems(tmp_path, yaml.safe_dump(GOOD) + "bomb:\n  " + "\n  ".join(levels) + "\n")
    # Refused while parsing, before ${VAR} expansion would copy 9**9 strings.
    where = f"{tmp_path / 'bridge.yaml'}: invalid YAML (line 1, column 1)"
    assert lines == [f"{where}: aliases expand to more than 100,000 values"]


def test_a_long_string_aliased_many_times_is_refused_by_its_size(tmp_path: Path) -> None:
    """130 KB aliasing a 50 KB string 20,000 times took check to 1 GB: few values, much text."""
    aliases = ", ".join(["*big"] * 20_000)
    text = yaml.safe_dump(GOOD) + f"big: &big {'x' * 50_000}\nbomb: [{aliases}]\n"
    lines = problems(tmp_path, text)
    where = f"{tmp_path / 'bridge.yaml'}: invalid YAML (line 1, column 1)"
    assert lines == [f"{where}: aliases expand to more than 8 MB of text"]


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(GOOD) + "delivery:\n  max_in_flight: 4\n"
    [line] = problems(tmp_path, text)
    assert line.startswith(f"{tmp_path / 'bridge.yaml'}: invalid YAML (line ")
    assert line.endswith("duplicate key 'delivery' (the last one would silently win)")


def test_an_unterminated_variable_is_refused(tmp_path: Path) -> None:
    broken = {**GOOD, "intilery": {**GOOD["intilery"], "client_id": "${CLIENT_ID"}}
    expected = (
        f"{tmp_path / 'bridge.yaml'}: intilery.client_id: a ${{ without a matching }} or a valid "
        "variable name; write $${ for a literal ${"
    )
    assert problems(tmp_path, broken) == [expected]
    with pytest.raises(ConfigError) as info:  # offline too: map would send it literally
        load_offline(
            str(
                write(
                    tmp_path,
                    {
                        **GOOD,
                        "rules": [
                            {**GOOD["rules"][0], "emit": {**GOOD["rules"][0]["emit"], "assetId": "${ASSET"}}
                        ],
                    },
                )
            )
        )
    assert "rules[0] (abandoned-sms).emit.assetId: a ${ without a matching }" in info.value.problems[0]
    literal = {**GOOD, "intilery": {**GOOD["intilery"], "client_id": "$${CLIENT_ID}"}}
    assert load(str(write(tmp_path, literal)), env={"TOKEN": "t"}).config.intilery.client_id == "${CLIENT_ID}"


def test_an_audit_topic_that_is_a_source_or_the_dead_letter_topic_is_refused(tmp_path: Path) -> None:
    where = tmp_path / "bridge.yaml"
    for topic, problem in [
        ("bookings", "is also a source topic; audit entries would be read as events"),
        ("dlq", "is also the dead-letter topic; redrive would send its entries"),
    ]:
        config = {**GOOD, "delivery": {**GOOD["delivery"], "audit_topic": topic}}
        assert problems(tmp_path, config) == [f"{where}: delivery.audit_topic: {problem}"]
    config = {**GOOD, "delivery": {**GOOD["delivery"], "audit_topic": "audit", "audit_include_body": True}}
    delivery = load(str(write(tmp_path, config)), env={"TOKEN": "t"}).config.delivery
    assert (delivery.audit_topic, delivery.audit_include_body) == ("audit", True)


def test_a_dead_letter_topic_that_is_a_source_topic_is_refused(tmp_path: Path) -> None:
    loop = {**GOOD, "delivery": {**GOOD["delivery"], "dead_letter_topic": "bookings"}}
    assert problems(tmp_path, loop) == [
        f"{tmp_path / 'bridge.yaml'}: delivery.dead_letter_topic: is also a source topic; "
        "dead letters would be read again"
    ]


@pytest.mark.parametrize(("written", "meant"), [("send_smss", "send_sms"), ("Send Mail", "send_email")])
def test_an_event_name_a_typo_away_from_a_command_is_refused(
    tmp_path: Path, written: str, meant: str
) -> None:
    rule = {"name": "abandoned-sms", "emit": {"event": written, "userId": "{{ c }}", "assetId": "A"}}
    assert problems(tmp_path, {**GOOD, "rules": [rule]}) == [
        f"{tmp_path / 'bridge.yaml'}: rules[0] (abandoned-sms).emit.event: {written!r} is not a command; "
        f"did you mean {meant}? (as written, a plain track event)"
    ]
    plain = {**rule, "emit": {"event": "Booking Viewed", "userId": "{{ c }}"}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKEN", "t")
        assert len(load(str(write(tmp_path, {**GOOD, "rules": [plain]}))).mapper) == 1


def test_librdkafka_property_typos_are_found_offline(tmp_path: Path) -> None:
    """check builds the consumer configuration without connecting anywhere."""
    kafka = {**GOOD["kafka"], "auto.ofset.reset": "earliest", "auto.offset.reset": "earlist"}
    where = tmp_path / "bridge.yaml"
    assert sorted(problems(tmp_path, {**GOOD, "kafka": kafka})) == [
        f'{where}: kafka.auto.offset.reset: Invalid value "earlist" for configuration property '
        '"auto.offset.reset"',
        f'{where}: kafka.auto.ofset.reset: No such configuration property: "auto.ofset.reset"',
    ]


def test_registry_credentials_are_checked_without_echoing_them(tmp_path: Path) -> None:
    where = f"{tmp_path / 'bridge.yaml'}: source.schema_registry"

    def with_registry(registry: dict[str, Any]) -> dict[str, Any]:
        return {**GOOD, "source": {**GOOD["source"], "schema_registry": registry}}

    [line] = problems(tmp_path, with_registry({"url": "http://r:8081", "basic_auth": "no-colon-secret"}))
    assert line.startswith(f"{where}.basic_auth: ") and "expected USER:PASSWORD" in line
    assert "no-colon-secret" not in line
    both = {"url": "http://u:p@r:8081", "basic_auth": "user:pw-secret"}
    [line] = problems(tmp_path, with_registry(both))
    assert line.startswith(f"{where}: ") and "credentials both in url and in basic_auth" in line
    assert "pw-secret" not in line


def test_yaml_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    assert problems(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n") == [
        f"{tmp_path / 'bridge.yaml'}: invalid YAML: nested too deeply"
    ]


@pytest.mark.parametrize("group", ["", "  ", "\x00", "\x00a"])
def test_an_empty_group_id_is_refused_not_an_abort(tmp_path: Path, group: str) -> None:
    """confluent-kafka aborts the process on a consumer whose group id librdkafka reads as
    empty (a fuzzing run found it): such a group id is refused, naming the key."""
    data = {**GOOD, "kafka": {**GOOD["kafka"], "group.id": group}}
    assert problems(tmp_path, data) == [f"{tmp_path / 'bridge.yaml'}: kafka.group.id: must not be empty"]
    assert librdkafka_problems({"bootstrap.servers": "x:1", "group.id": group}) == [
        "kafka.group.id: must not be empty"
    ]


def test_an_environment_reference_inside_rules_is_refused_and_never_expanded(tmp_path: Path) -> None:
    """``note: "price ${SECRET_X}"`` put the secret's value in the command body and in map's
    output, unredacted; an unset one became an empty string."""
    rule = GOOD["rules"][0]
    data = {**GOOD, "rules": [{**rule, "emit": {**rule["emit"], "note": "price ${SECRET_X} and $${LIT}"}}]}
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load(str(path), env={"SECRET_X": "hunter2-secret", "TOKEN": "t"})
    (problem,) = info.value.problems
    where = f"{path}: rules[0] (abandoned-sms).emit.note: "
    assert problem.startswith(where + "${SECRET_X} is not expanded inside rules")
    assert "hunter2-secret" not in problem
    data["rules"][0]["emit"]["note"] = "price $${LIT}"
    mapper = load(str(write(tmp_path, data)), env={"TOKEN": "t"}).mapper
    meta = {"topic": "bookings", "partition": 0, "offset": 0, "key": None, "timestamp": 1, "headers": {}}
    assert mapper.map({"c": "C-1"}, meta)[0].body["note"] == "price ${LIT}"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tok\nen", "contains a control character"),
        ("tok\x07en", "contains a control character"),
        ("tökén-secret", "not ASCII"),
    ],
)
def test_an_unusable_token_is_refused_in_one_line_without_its_value(
    tmp_path: Path, token: str, problem: str
) -> None:
    """Each passed check --require-env, then stopped the bridge at the first record with a
    traceback (or at start-up)."""
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        load(str(path), env={"TOKEN": token})
    (line,) = info.value.problems
    assert line.startswith(f"{path}: intilery.auth_token: ") and problem in line
    assert token.strip() == "" or token not in line


def test_one_trailing_newline_is_removed_with_a_warning(tmp_path: Path) -> None:
    loaded = load(str(write(tmp_path, GOOD)), env={"TOKEN": "s3cret-token\n"})
    assert loaded.config.intilery.auth_token.get_secret_value() == "s3cret-token"
    assert any("trailing newline removed" in warning for warning in loaded.mapper.warnings)


def test_a_password_in_any_url_is_redacted_wherever_it_is_printed(tmp_path: Path) -> None:
    """tls_verification_disabled logged http://bob:UrlPassw0rd@...; check printed it too."""
    data = {
        **GOOD,
        "intilery": {**GOOD["intilery"], "url": "https://bob:IntiPassw0rd@intilery.example.com"},
        "source": {
            "topics": ["bookings"],
            "schema_registry": {"url": "https://bob:UrlPassw0rd@registry.example.com"},
        },
    }
    load(str(write(tmp_path, data)), env={"TOKEN": "t"})
    line = (
        "url=https://bob:UrlPassw0rd@registry.example.com and https://bob:IntiPassw0rd@intilery.example.com"
    )
    assert "Passw0rd" not in redact(line)


def test_tls_verification_switched_off_for_kafka_or_redis_is_warned_of(tmp_path: Path) -> None:
    """Both passed silently; Intilery's and the registry's already said so."""
    kafka = {**GOOD["kafka"], "enable.ssl.certificate.verification": False}
    kafka["ssl.endpoint.identification.algorithm"] = "none"
    redis = {"url": "rediss://redis.example.com:6380/0?ssl_cert_reqs=none"}
    intilery = {**GOOD["intilery"], "rate_limit": {"redis": redis}}
    path = write(tmp_path, {**GOOD, "kafka": kafka, "intilery": intilery})
    warnings = load(str(path), env={"TOKEN": "t"}).mapper.warnings
    assert [w for w in warnings if "TLS" in w] == [
        "kafka.enable.ssl.certificate.verification: false: TLS verification of kafka is off",
        "kafka.ssl.endpoint.identification.algorithm: none: TLS verification of kafka is off",
        "intilery.rate_limit.redis.url: ssl_cert_reqs=none: TLS verification of redis is off",
    ]
    assert not [w for w in load(str(write(tmp_path, GOOD)), env={"TOKEN": "t"}).mapper.warnings if "TLS" in w]


def test_http_to_a_host_that_is_not_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    """The token would travel in clear text (it passed before)."""
    data = {**GOOD, "intilery": {**GOOD["intilery"], "url": "http://intilery.example.com"}}
    (line,) = problems(tmp_path, data)
    assert "intilery: url: http:// to intilery.example.com would send the auth token in clear text" in line
    assert "allow_insecure_http" in line
    data["intilery"]["allow_insecure_http"] = True
    assert (
        load(str(write(tmp_path, data)), env={"TOKEN": "t"}).config.intilery.url
        == "http://intilery.example.com"
    )
    for local in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        data = {**GOOD, "intilery": {**GOOD["intilery"], "url": local}}
        assert load(str(write(tmp_path, data)), env={"TOKEN": "t"}).config.intilery.url == local


def test_secrets_from_files_as_kubernetes_mounts_them(tmp_path: Path) -> None:
    """auth_token_file, the registry's basic_auth_file and Redis' password_file: read at
    start-up, with the checks of the fields they fill; never printed."""
    (tmp_path / "token").write_text("Tok3n-From-File\n")  # kubectl create secret --from-file
    (tmp_path / "registry").write_text("bob:Registry-Passw0rd")
    (tmp_path / "redis").write_text("Redis-Passw0rd\n")
    intilery = {key: value for key, value in GOOD["intilery"].items() if key != "auth_token"}
    data = {
        **GOOD,
        "intilery": {
            **intilery,
            "auth_token_file": str(tmp_path / "token"),
            "rate_limit": {"redis": {"url": "redis://r:6379/0", "password_file": str(tmp_path / "redis")}},
        },
        "source": {
            "topics": ["bookings"],
            "schema_registry": {
                "url": "https://r.example.com",
                "basic_auth_file": str(tmp_path / "registry"),
            },
        },
    }
    loaded = load(str(write(tmp_path, data)), env={})
    config = loaded.config
    assert config.intilery.auth_token.get_secret_value() == "Tok3n-From-File"
    assert config.intilery.rate_limit.redis is not None
    assert config.intilery.rate_limit.redis.password.get_secret_value() == "Redis-Passw0rd"  # type: ignore[union-attr]
    assert config.source.schema_registry.basic_auth.get_secret_value() == "bob:Registry-Passw0rd"  # type: ignore[union-attr]
    assert [w.split(":")[0] for w in loaded.mapper.warnings if "trailing newline" in w] == [
        "intilery.auth_token",
        "intilery.rate_limit.redis.password",
    ]
    for secret in ("Tok3n-From-File", "Redis-Passw0rd", "Registry-Passw0rd"):
        assert secret not in redact(f"a line with {secret} in it"), secret

    (tmp_path / "token").write_text("two\nlines\n")
    (line,) = problems(tmp_path, data)
    assert line.endswith(
        "intilery.auth_token: contains a control character (a line break?); the value is not shown"
    )
    assert "two" not in line
    data["intilery"]["auth_token_file"] = str(tmp_path / "missing")
    (line,) = problems(tmp_path, data)
    missing = (
        f"intilery.auth_token: cannot read auth_token_file {tmp_path / 'missing'}: No such file or directory"
    )
    assert line.endswith(missing)
    notes: list[str] = []  # check without --require-env, where the Secret is not mounted
    assert load(str(write(tmp_path, data)), notes, env={}).config.intilery.auth_token.get_secret_value() == ""
    assert notes == [missing]
    data["intilery"]["auth_token"] = "${TOKEN}"
    (line,) = problems(tmp_path, data)
    assert line.endswith("intilery.auth_token_file: auth_token is set too; give one of them")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("intilery", "timeout_s", float("inf")),  # passed check, then dead-lettered every command
        ("intilery", "max_timeout_s", float("nan")),
        ("delivery", "stuck_after_s", float("inf")),
        ("delivery", "shutdown_grace_s", float("inf")),
    ],
)
def test_a_number_that_is_not_finite_is_refused_naming_its_key(
    tmp_path: Path, section: str, key: str, value: float
) -> None:
    data = {**GOOD, section: {**GOOD[section], key: value}}
    (problem,) = problems(tmp_path, data)
    assert problem.startswith(f"{tmp_path / 'bridge.yaml'}: {section}.{key}: ") and "finite" in problem


def test_a_duration_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    rule = {**GOOD["rules"][0], "max_age": "9" * 400 + "d"}  # float() makes it inf
    (problem,) = problems(tmp_path, {**GOOD, "rules": [rule]})
    assert "rules[0] (abandoned-sms).max_age: must be a finite duration" in problem, problem


def test_what_a_file_gives_is_redacted_wherever_it_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``${file:/proc/self/environ}`` in a topic printed the token in check's OK line."""
    secret = tmp_path / "environ"
    secret.write_text("TOKEN=s3cr3t-value\x00HOME=/root")
    data = {**GOOD, "source": {"topics": [f"${{file:{secret}}}"]}}
    path = write(tmp_path, data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKEN", "t")
        code, out, err = run_cli(capsys, "check", "--config", str(path))
    assert code == 0 and "topics: [redacted]" in out, out + err
    assert "s3cr3t" not in out + err and redact(secret.read_text()) == "[redacted]"


def test_every_problem_at_once_in_the_project_s_words(tmp_path: Path) -> None:
    """One problem hid another (`max_age: -5m` hid `emit.assetId` in the same rule), keys
    got no "did you mean" while command names did, and pydantic's wording leaked."""
    data = {
        **GOOD,
        "source": {"topics": "bookings", "dead_leter_topic": "dlq"},
        "intilery": {**GOOD["intilery"], "timout_s": 3},
        "delivery": None,  # every key commented out
        "rules": [
            {"name": "a", "emitt": {"event": "send_sms"}},
            {"name": "p", "max_age": "-5m", "emit": {"event": "send_print", "userId": "u"}},
        ],
    }
    path = write(tmp_path, data)
    found = problems(tmp_path, data)
    assert f"{path}: source.topics: must be a list (one '- item' per line, or [a, b])" in found
    assert f"{path}: source.dead_leter_topic: unknown key; did you mean delivery.dead_letter_topic?" in found
    assert f"{path}: intilery.timout_s: unknown key; did you mean timeout_s?" in found
    assert any(line.startswith(f"{path}: delivery: must be a mapping of keys (empty here") for line in found)
    assert f"{path}: rules[0] (a).emitt: unknown key; did you mean emit?" in found
    assert f"{path}: rules[1] (p).max_age: a duration such as 90s, 15m, 2h, 1d or 1h30m" in found
    assert f"{path}: rules[1] (p).emit.assetId: required for send_print" in found
    assert not any("Input should" in line or "DeliveryConfig" in line for line in found), found


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "empty (only comments, or nothing): write the sections in it"),
        ("# kafka:\n#   group.id: g\n", "empty (only comments, or nothing): write the sections in it"),
        ("kafka:\n\tgroup.id: g\n", "a tab: YAML indents with spaces only (replace the tab by spaces)"),
    ],
)
def test_an_empty_file_and_a_tab_say_what_to_do(tmp_path: Path, text: str, said: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith(str(tmp_path)) and found[0].endswith(said)


def test_check_notes_unset_deployment_variables_as_it_notes_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` refused a file whose KAFKA_BOOTSTRAP_SERVERS was unset while `map` did not, so
    a rules repository's CI had to invent deployment variables; `--require-env` refuses."""
    for name in ("BOOT", "PORT", "IB_URL", "TOKEN"):
        monkeypatch.delenv(name, raising=False)
    data = {
        **GOOD,
        "kafka": {"bootstrap.servers": "${BOOT}", "group.id": "g"},
        "intilery": {**GOOD["intilery"], "url": "${IB_URL}"},
        "observability": {"port": "${PORT}"},
    }
    path = write(tmp_path, data)
    code, out, err = run_cli(capsys, "check", "--config", str(path))
    assert code == 0 and "OK" in out, err
    for field, name in (
        ("kafka.bootstrap.servers", "BOOT"),
        ("observability.port", "PORT"),
        ("intilery.url", "IB_URL"),
    ):
        assert f"{path}: {field}: environment variable {name} is not set (fine for check;" in err
    code, _, err = run_cli(capsys, "check", "--require-env", "--config", str(path))
    assert code == 1 and f"{path}: kafka.bootstrap.servers: environment variable BOOT is not set" in err
    with pytest.raises(ConfigError):
        load(str(path), env={"TOKEN": "t"})  # run refuses it as before
