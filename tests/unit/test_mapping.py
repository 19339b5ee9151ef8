"""Rules and templates: typed values, mixed text, nulls, `when`, the command contract."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import RuleConfig
from bridge.errors import MappingError, MissingFields
from bridge.rules.mapping import MAX_CALL_BYTES, CompiledRule, Mapper, compile_rules

META = {
    "topic": "bookings",
    "partition": 2,
    "offset": 7,
    "key": "C-1",
    "timestamp": 1574083812984,
    "headers": {"source": "web"},
}
EVENT = {
    "type": "booking_abandoned",
    "channel": "sms",
    "customer": {"id": "C-1", "tier": None},
    "booking": {"id": "B-1", "value": 1200.5, "lines": [{"sku": "A"}], "stepId": "S-1"},
    "count": 0,
}


def rule(
    emit: dict[str, Any], when: str | None = None, name: str = "r", topics: list[str] | None = None
) -> CompiledRule:
    problems: list[str] = []
    compiled = CompiledRule(
        RuleConfig(name=name, when=when, emit=emit, topics=topics), f"rules[0] ({name})", problems
    )
    assert problems == []
    return compiled


def run(emit: dict[str, Any], when: str | None = None, event: dict[str, Any] = EVENT) -> dict[str, Any]:
    command = Mapper([rule(emit, when)], ["bookings"]).map(event, META)
    assert len(command) == 1
    return command[0].body


def test_whole_expression_keeps_type() -> None:
    body = run(
        {
            "event": "x",
            "userId": "{{ customer.id }}",
            "booking": "{{ booking }}",
            "value": "{{ booking.value }}",
            "lines": "{{ booking.lines }}",
            "n": "{{count}}",
        }
    )
    assert body["booking"] == EVENT["booking"]
    assert body["value"] == 1200.5 and body["lines"] == [{"sku": "A"}] and body["n"] == 0


def test_mixed_text_renders_a_string() -> None:
    body = run(
        {
            "event": "x",
            "userId": "u",
            "url": "https://x/{{ booking.id }}?v={{ booking.value }}",
            "obj": "lines: {{ booking.lines }}",
        }
    )
    assert body["url"] == "https://x/B-1?v=1200.5"
    assert body["obj"] == 'lines: [{"sku":"A"}]'


def test_literals_stay_literal() -> None:
    body = run({"event": "x", "userId": "u", "n": 5, "flag": False, "list": [1, "a"], "nested": {"k": None}})
    assert body["n"] == 5 and body["flag"] is False and body["list"] == [1, "a"]
    assert body["nested"] == {"k": None}


def test_null_leaves_key_out() -> None:
    body = run(
        {
            "event": "x",
            "userId": "u",
            "tier": "{{ customer.tier }}",
            "missing": "{{ nope.deeper }}",
            "mixed": "tier {{ customer.tier }}",
            "nested": {"a": "{{ nope }}", "b": 1},
        }
    )
    assert "tier" not in body and "missing" not in body and "mixed" not in body
    assert body["nested"] == {"b": 1}


def test_kafka_metadata_visible() -> None:
    body = run(
        {
            "event": "x",
            "userId": "u",
            "t": "{{ _kafka.topic }}",
            "p": "{{ _kafka.partition }}",
            "o": "{{ _kafka.offset }}",
            "k": "{{ _kafka.key }}",
            "h": "{{ _kafka.headers.source }}",
        },
        when="_kafka.headers.source == 'web'",
    )
    assert (body["t"], body["p"], body["o"], body["k"], body["h"]) == ("bookings", 2, 7, "C-1", "web")


@pytest.mark.parametrize(
    ("when", "matches"),
    [
        ("type == 'booking_abandoned'", True),
        ("type == 'other'", False),
        ("count", True),
        ("customer.tier", False),
        ("booking.lines", True),
        ("`[]`", False),
        ("''", False),
        ("booking.value > `1000`", True),
        ("booking.value > `2000`", False),
    ],
)
def test_when_uses_jmespath_truthiness(when: str, matches: bool) -> None:
    commands = Mapper([rule({"event": "x", "userId": "u"}, when)], ["bookings"]).map(EVENT, META)
    assert bool(commands) is matches


def test_command_names_normalised_and_actions() -> None:
    mapper = Mapper(
        [
            rule({"event": "SEND_SMS", "userId": "u", "assetId": "a"}, name="a"),
            rule({"event": "Identify", "userId": "u", "traits": {}}, name="b"),
            rule({"event": "Booking Abandoned", "userId": "u"}, name="c"),
            rule(
                {"event": "Start_Journey", "userId": "u", "properties": {"journeyIdToTrigger": "j"}}, name="d"
            ),
        ],
        ["bookings"],
    )
    commands = mapper.map(EVENT, META)
    assert [(c.rule, c.action, c.name) for c in commands] == [
        ("a", "track", "send_sms"),
        ("b", "identify", "identify"),
        ("c", "track", "Booking Abandoned"),
        ("d", "track", "start_journey"),
    ]


def test_rules_emit_in_order_and_respect_topics() -> None:
    mapper = Mapper(
        [
            rule({"event": "x", "userId": "u"}, name="one", topics=["other"]),
            rule({"event": "y", "userId": "u"}, name="two"),
        ],
        ["bookings", "other"],
    )
    assert [c.rule for c in mapper.map(EVENT, META)] == ["two"]
    assert [c.rule for c in mapper.map(EVENT, {**META, "topic": "other"})] == ["one", "two"]


def test_a_rule_limited_to_topics_is_not_applied_to_a_topic_the_set_does_not_know() -> None:
    """A candidate's rules (``diff``, ``--shadow``) meet the live topics: a topic the candidate
    does not list ran every rule on it, its ``topics:`` ignored."""
    mapper = Mapper(
        [
            rule({"event": "x", "userId": "u"}, name="one", topics=["other"]),
            rule({"event": "y", "userId": "u"}, name="two"),
        ],
        ["other"],
    )
    assert [c.rule for c in mapper.map(EVENT, {**META, "topic": "unknown"})] == ["two"]


def test_timestamp_defaults_to_record_time_and_is_normalised() -> None:
    assert run({"event": "x", "userId": "u"})["timestamp"] == "2019-11-18T13:30:12.984Z"
    body = run({"event": "x", "userId": "u", "timestamp": "{{ t }}"}, event={**EVENT, "t": 1574083812})
    assert body["timestamp"] == "2019-11-18T13:30:12.000Z"


@pytest.mark.parametrize(
    ("emit", "reason"),
    [
        (
            {"event": "send_sms", "userId": "{{ customer.nope }}", "assetId": "a"},
            "userId: required for send_sms",
        ),
        ({"event": "send_email", "userId": "u", "assetId": "{{ nope }}"}, "assetId: required for send_email"),
        ({"event": "send_push", "userId": "u", "assetId": "{{ ' ' }}"}, "assetId: required for send_push"),
        (
            {"event": "start_journey", "userId": "u", "properties": {"journeyIdToTrigger": "{{ nope }}"}},
            "properties.journeyIdToTrigger: required for start_journey",
        ),
        ({"event": "{{ nope }}", "userId": "u"}, "event: required, a non-empty string"),
        ({"event": "x", "userId": "{{ nope }}"}, "userId: userId or anonymousId required for a track event"),
        (
            {"event": "x", "userId": "u", "timestamp": "{{ type }}"},
            "timestamp: not a time, or out of range (str of size",
        ),
    ],
)
def test_rendered_body_breaking_contract_is_mapping_error(emit: dict[str, Any], reason: str) -> None:
    with pytest.raises(MappingError) as info:
        Mapper([rule(emit, name="bad")], ["bookings"]).map(EVENT, META)
    assert info.value.reason.startswith(reason)
    assert info.value.rule == "bad" and info.value.error_class == "mapping"


def test_anonymous_track_allowed() -> None:
    assert run({"event": "Page Seen", "anonymousId": "anon-1"})["anonymousId"] == "anon-1"


def test_body_over_32kb_is_mapping_error() -> None:
    big = {**EVENT, "blob": "x" * MAX_CALL_BYTES}
    with pytest.raises(MappingError, match="over Intilery's 32 KB"):
        Mapper([rule({"event": "x", "userId": "u", "blob": "{{ blob }}"})], ["bookings"]).map(big, META)


def test_expression_runtime_error_is_mapping_error() -> None:
    with pytest.raises(MappingError, match="failed"):
        run({"event": "x", "userId": "u", "n": "{{ abs(type) }}"})


def test_payload_is_compact_json_of_body() -> None:
    [command] = Mapper([rule({"event": "x", "userId": "ü"})], ["bookings"]).map(EVENT, META)
    assert command.payload == '{"event":"x","userId":"ü","timestamp":"2019-11-18T13:30:12.984Z"}'.encode()


@pytest.mark.parametrize(
    ("when", "value", "said"),
    [
        ("abs(booking.value) > `1`", "+447700900123", "abs() takes number, not string (str of size 13)"),
        (
            "length(booking.value) > `1`",
            447700900123,
            "length() takes string, array, object, not number (int)",
        ),
        ("max(booking.value) > `1`", ["ada@example.com", 3], "max() takes array-number, array-string, not"),
    ],
)
def test_a_rule_error_never_quotes_the_value(when: str, value: object, said: str) -> None:
    """JMESPath's type errors quote the value (a phone number, an e-mail address): the
    reason names the function and the types."""
    mapper, problems = compile_rules(
        [{"name": "n", "when": when, "emit": {"event": "x", "userId": "u"}}], ["t"]
    )
    assert problems == []
    meta = {"topic": "t", "partition": 0, "offset": 0, "key": None, "timestamp": None, "headers": {}}
    with pytest.raises(MappingError) as info:
        mapper.map({"booking": {"value": value}}, meta)
    assert said in info.value.reason
    assert "447700900123" not in info.value.reason and "ada@" not in info.value.reason


def test_a_rule_error_is_short_whatever_the_size_of_the_value() -> None:
    """JMESPath's type errors quote the value: a 900 KB field made a 1.35 MB reason."""
    mapper, problems = compile_rules(
        [{"name": "n", "when": "abs(booking.value) > `1`", "emit": {"event": "x", "userId": "u"}}], ["t"]
    )
    assert problems == []
    meta = {"topic": "t", "partition": 0, "offset": 0, "key": None, "timestamp": None, "headers": {}}
    with pytest.raises(MappingError) as info:
        mapper.map({"booking": {"value": "v" * 900_000}}, meta)
    assert len(info.value.reason) < 500 and "v" * 10 not in info.value.reason


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lenght(type) > `0`", "unknown function lenght(); did you mean length()?"),
        ("length(type, channel) > `0`", "length() takes 1 argument, given 2"),
        ("contains(type)", "contains() takes 2 arguments, given 1"),
        ("{{ upper(customer.id) }}", "unknown function upper()"),
    ],
)
def test_an_unknown_function_or_a_wrong_number_of_arguments_is_refused_at_start_up(
    text: str, problem: str
) -> None:
    """jmespath itself finds these only when the expression runs: every matching record
    would have been dead-lettered."""
    rule = {"name": "n", "emit": {"event": "x", "userId": "u"}}
    if text.startswith("{{"):
        rule["emit"] = {**rule["emit"], "note": text}  # type: ignore[dict-item]
    else:
        rule["when"] = text
    _, problems = compile_rules([rule], ["t"])
    assert len(problems) == 1 and problems[0].startswith("rules[0] (n).") and problems[0].endswith(problem)


def test_functions_with_the_right_arguments_compile() -> None:
    whens = ["not_null(a, b, c)", "starts_with(type, 'b')", "sort_by(items, &price)[0].x == `1`"]
    for when in [*whens, "length(@) > `0`"]:
        rule = {"name": "n", "when": when, "emit": {"event": "x", "userId": "u"}}
        assert compile_rules([rule], ["t"])[1] == []


@pytest.mark.parametrize("event", ["Send Email", "send-email", "send_email ", "send  email", "sendemail"])
def test_a_name_that_is_not_exactly_a_command_is_refused_at_check_and_at_run_time(event: str) -> None:
    """Each passed check --strict and went out as a plain track event: no e-mail sent."""
    rule = {"name": "n", "emit": {"event": event, "userId": "u", "assetId": "A"}}
    _, problems = compile_rules([rule], ["t"])
    assert problems == [
        f"rules[0] (n).emit.event: {event!r} is not a command; did you mean send_email? "
        "(as written, a plain track event)"
    ]
    rendered, none = compile_rules([{"name": "n", "emit": {"event": "{{ kind }}", "userId": "u"}}], ["t"])
    assert none == []
    meta = {"topic": "t", "partition": 0, "offset": 0, "key": None, "timestamp": None, "headers": {}}
    with pytest.raises(MappingError, match="did you mean send_email") as info:
        rendered.map({"kind": event}, meta)
    assert info.value.rule == "n"


def test_any_case_of_a_command_and_other_names_are_still_accepted() -> None:
    mapper, _ = compile_rules([{"name": "n", "emit": {"event": "{{ kind }}", "userId": "u"}}], ["t"])
    meta = {"topic": "t", "partition": 0, "offset": 0, "key": None, "timestamp": None, "headers": {}}
    assert [mapper.map({"kind": kind}, meta)[0].name for kind in ("Identify", "Booking Viewed")] == [
        "identify",
        "Booking Viewed",
    ]


SMS_WITH_HOLES = {
    "event": "send_sms",
    "userId": "{{ customer.id }}",
    "assetId": "A",
    "greeting": "Hi {{ travller.firstName }}, {{ customer.nickname }}",
    "tier": "{{ customer.tier }}",
}


@pytest.mark.parametrize("on_missing", ["empty", "skip", "dead_letter"])
def test_a_template_of_a_field_the_event_lacks_is_named_and_on_missing_decides(on_missing: str) -> None:
    """The merge tag went without a word ("Hi !"): the command now names every such field,
    each once, and the rule's on_missing decides what it becomes."""
    compiled = CompiledRule(
        RuleConfig(name="r", emit=SMS_WITH_HOLES, on_missing=on_missing), "rules[0] (r)", []
    )
    mapper = Mapper([compiled], ["bookings"])
    expected = ("travller.firstName", "customer.nickname", "customer.tier")
    if on_missing == "dead_letter":
        with pytest.raises(MissingFields) as refused:
            mapper.map(dict(EVENT), META)
        assert refused.value.rule == "r" and refused.value.fields == expected
        assert refused.value.error_class == "mapping" and "travller.firstName" in refused.value.reason
        return
    (command,) = mapper.map(dict(EVENT), META)
    assert command.missing == expected and command.held is (on_missing == "skip")
    assert "greeting" not in command.body and "tier" not in command.body
    assert mapper.template_paths() == {"r": ["customer.id", *expected]}


def test_an_event_with_every_field_names_none() -> None:
    event = {**EVENT, "travller": {"firstName": "Ann"}, "customer": {"id": "C-1", "nickname": "A", "tier": 1}}
    (command,) = Mapper([rule(SMS_WITH_HOLES)], ["bookings"]).map(event, META)
    assert command.missing == () and command.body["greeting"] == "Hi Ann, A"
