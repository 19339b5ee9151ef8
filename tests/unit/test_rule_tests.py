"""`intilery-bridge test`: golden cases for the rules, and `check --tests`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import run_cli as run

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
CONFIG = str(EXAMPLES / "bridge.yaml")
SMS_EVENT = {
    "type": "booking_abandoned",
    "channel": "sms",
    "occurredAt": "2026-11-21T18:42:11.123Z",
    "customer": {"id": "C-1"},
    "booking": {"id": "B-1", "value": 10},
}
SMS_BODY = {
    "event": "send_sms",
    "userId": "C-1",
    "assetId": "202007-B-AbandonedBooking",
    "timestamp": "2026-11-21T18:42:11.123Z",
    "bookingId": "B-1",
    "booking": {"id": "B-1", "value": 10},
}


def write(tmp_path: Path, *cases: dict[str, Any], name: str = "cases.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"tests": list(cases)}, sort_keys=False))
    return str(path)


def sms_case(**changes: Any) -> dict[str, Any]:
    case = {
        "name": "sms",
        "event": SMS_EVENT,
        "expect": [{"rule": "abandoned-sms", "action": "track", "body": SMS_BODY}],
    }
    return {**case, **changes}


@pytest.mark.parametrize("config", ["bridge", "bridge-avro"])
def test_the_examples_tests_pass_and_exercise_every_rule(
    capsys: pytest.CaptureFixture[str], config: str
) -> None:
    files = str(EXAMPLES / "tests" / config / "*.yaml")
    code, out, err = run(capsys, "test", "--config", str(EXAMPLES / f"{config}.yaml"), files)
    assert code == 0, out + err
    assert "FAIL" not in out and out.splitlines()[-1].endswith(" 0 failed")
    code, out, err = run(
        capsys, "check", "--strict", "--config", str(EXAMPLES / f"{config}.yaml"), "--tests", files
    )
    assert code == 0 and "no test case exercises" not in err, err


def test_a_passing_case_prints_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, sms_case(), {"name": "nothing", "event": {"type": "other"}, "expect": []})
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 0
    assert out.splitlines() == [
        f"PASS  {path}: sms",
        f"PASS  {path}: nothing",
        "test: 2 cases, 2 passed, 0 failed",
    ]


def test_a_failing_case_shows_the_rule_the_field_and_both_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = {**SMS_BODY, "bookingId": "B-2", "booking": {"id": "B-1", "value": "10"}, "extra": True}
    del body["assetId"]
    path = write(tmp_path, sms_case(expect=[{"rule": "abandoned-sms", "action": "identify", "body": body}]))
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 1
    assert out.splitlines() == [
        f"FAIL  {path}: sms",
        "      command 1 (rule abandoned-sms): action: expected 'identify', got 'track'",
        '      command 1 (rule abandoned-sms): body.bookingId: expected "B-2", got "B-1"',
        '      command 1 (rule abandoned-sms): body.booking.value: expected "10", got 10',
        "      command 1 (rule abandoned-sms): body.extra: expected true, missing",
        '      command 1 (rule abandoned-sms): body.assetId: not expected, got "202007-B-AbandonedBooking"',
        "test: 1 case, 0 passed, 1 failed",
    ]


def test_commands_of_other_rules_or_in_another_order_fail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = {**SMS_EVENT, "booking": {"id": "B-1", "value": 5000}}
    expect = [{"rule": "big-basket-journey", "body": {}}, {"rule": "abandoned-sms", "body": SMS_BODY}]
    path = write(tmp_path, sms_case(event=big, expect=expect, match="subset"))
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 1
    assert (
        "expected commands of rules ['big-basket-journey', 'abandoned-sms'], "
        "got ['abandoned-sms', 'big-basket-journey']" in out
    )


def test_exact_by_default_subset_when_asked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    few = [{"rule": "abandoned-sms", "body": {"userId": "C-1", "bookingId": "B-1"}}]
    path = write(
        tmp_path, sms_case(name="exact", expect=few), sms_case(name="subset", expect=few, match="subset")
    )
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 1
    assert f"FAIL  {path}: exact" in out and f"PASS  {path}: subset" in out
    assert "body.event: not expected" in out


def test_a_boolean_is_not_a_number_but_10_is_10_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    event = {**SMS_EVENT, "booking": {"id": "B-1", "value": 1}}
    ten = sms_case(
        name="number", expect=[{"rule": "abandoned-sms", "body": {"booking": {"id": "B-1", "value": 1.0}}}]
    )
    true = sms_case(
        name="boolean", expect=[{"rule": "abandoned-sms", "body": {"booking": {"id": "B-1", "value": True}}}]
    )
    path = write(
        tmp_path, {**ten, "event": event, "match": "subset"}, {**true, "event": event, "match": "subset"}
    )
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 1
    assert f"PASS  {path}: number" in out and f"FAIL  {path}: boolean" in out


def test_expected_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nobody = {**SMS_EVENT, "customer": {}}
    path = write(
        tmp_path,
        {
            "name": "refused",
            "event": nobody,
            "expect_error": {"class": "mapping", "rule": "abandoned-sms", "reason_contains": "userId"},
        },
        {
            "name": "wrong reason",
            "event": nobody,
            "expect_error": {"class": "mapping", "reason_contains": "assetId"},
        },
        {"name": "wrong class", "event": nobody, "expect_error": {"class": "decode"}},
        {"name": "no error", "event": SMS_EVENT, "expect_error": {"class": "mapping"}},
        sms_case(name="error where commands were expected", event=nobody),
    )
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 1
    lines = out.splitlines()
    assert f"PASS  {path}: refused" in lines
    assert "      reason: expected it to contain 'assetId', got 'userId: required for send_sms'" in lines
    assert "      class: expected decode, got mapping (userId: required for send_sms)" in lines
    assert "      expected a mapping error, got 1 command(s) of rules ['abandoned-sms']" in lines
    assert (
        "      expected 1 command(s), the event failed: "
        "mapping: rule abandoned-sms: userId: required for send_sms" in lines
    )


def test_kafka_metadata_reaches_the_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    event = {
        "type": "booking_abandoned",
        "channel": "email",
        "customer": {"id": "C-1"},
        "booking": {"id": "B-1", "value": 2000},
    }
    expect = [
        {"rule": "abandoned-email", "body": {"timestamp": "2019-11-18T13:30:12.984Z"}},
        {"rule": "big-basket-journey", "body": {"timestamp": "2019-11-18T13:30:12.984Z"}},
    ]
    case = {
        "name": "record time",
        "kafka": {"key": "C-1", "timestamp": 1574083812984, "headers": {"source": "web"}},
    }
    path = write(tmp_path, {**case, "event": event, "expect": expect, "match": "subset"})
    code, out, _ = run(capsys, "test", "--config", CONFIG, path)
    assert code == 0, out


def test_an_unquoted_time_in_the_file_stays_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "times.yaml"
    path.write_text(
        "tests:\n  - name: t\n    match: subset\n"
        "    event: {type: booking_abandoned, channel: sms, occurredAt: 2026-11-21T18:42:11.123Z,"
        " customer: {id: C-1}, booking: {id: B-1}}\n"
        "    expect: [{rule: abandoned-sms, body: {timestamp: 2026-11-21T18:42:11.123Z}}]\n"
    )
    code, out, _ = run(capsys, "test", "--config", CONFIG, str(path))
    assert code == 0, out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("tests: [", "invalid YAML (line 1, column 9)"),
        ("tests: []", "tests: List should have at least 1 item"),
        ("cases: []", "cases: unknown key"),
        (yaml.safe_dump({"tests": [sms_case(expected=[])]}), "tests[0] (sms).expected: unknown key"),
        (yaml.safe_dump({"tests": [{"name": "n", "event": SMS_EVENT}]}), "tests[0] (n): give either expect"),
        (
            yaml.safe_dump({"tests": [sms_case(expect=[{"rule": "abandoned-smss", "body": {}}])]}),
            "tests[0] (sms).expect[0].rule: no rule named 'abandoned-smss' in",
        ),
        (
            yaml.safe_dump(
                {"tests": [sms_case(expect_error={"class": "mapping", "rule": "nope"}, expect=None)]}
            ),
            "tests[0] (sms).expect_error.rule: no rule named 'nope'",
        ),
        (
            yaml.safe_dump({"tests": [sms_case(topic="orders")]}),
            "tests[0] (sms).topic: orders is not in source.topics",
        ),
        (
            yaml.safe_dump({"tests": [sms_case(), sms_case()]}),
            "tests[1] (sms).name: another case has this name",
        ),
        (
            yaml.safe_dump({"tests": [sms_case(kafka={"timestamp": "yesterday"})]}),
            "tests[0] (sms).kafka.timestamp:",
        ),
    ],
)
def test_a_test_file_it_cannot_read_is_exit_2_naming_file_case_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, said: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    code, out, err = run(capsys, "test", "--config", CONFIG, str(path))
    assert code == 2 and out == ""
    assert f"{path}: {said}" in err, err


def test_a_file_or_glob_matching_nothing_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "test", "--config", CONFIG, str(tmp_path / "*.yaml"))
    assert code == 2 and f"{tmp_path}/*.yaml: no such file" in err


def test_an_avro_registry_topic_needs_a_schema_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, sms_case(topic="bookings-avro"))
    code, _, err = run(capsys, "test", "--config", str(EXAMPLES / "bridge-avro.yaml"), path)
    assert (
        code == 2 and "tests[0] (sms).schema: topic bookings-avro takes its schemas from the registry" in err
    )


def test_junit_xml_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, sms_case(), sms_case(name="fails", expect=[]))
    report = tmp_path / "report.xml"
    code, _, _ = run(capsys, "test", "--config", CONFIG, path, "--junit-xml", str(report))
    assert code == 1
    top = ET.parse(report).getroot()
    assert (top.tag, top.get("tests"), top.get("failures"), top.get("errors")) == (
        "testsuites",
        "2",
        "1",
        "0",
    )
    (suite,) = top
    assert suite.get("name") == path and [c.get("name") for c in suite] == ["sms", "fails"]
    failure = suite[1].find("failure")
    assert failure is not None and "expected commands of rules [], got ['abandoned-sms']" in failure.get(
        "message", ""
    )
    assert suite[0].find("failure") is None


def test_junit_xml_names_an_unreadable_file_as_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, report = tmp_path / "broken.yaml", tmp_path / "report.xml"
    path.write_text("tests: [")
    code, _, _ = run(capsys, "test", "--config", CONFIG, str(path), "--junit-xml", str(report))
    assert code == 2
    top = ET.parse(report).getroot()
    assert top.get("errors") == "1" and str(path) in ET.tostring(top, encoding="unicode")


def test_check_with_tests_names_the_rules_no_case_exercises(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, sms_case())
    code, out, err = run(capsys, "check", "--config", CONFIG, "--tests", path)
    assert code == 0 and "1 test case exercises 1 of them" in out
    assert f"{CONFIG}: warning: rule customer-identify: no test case exercises it" in err
    assert "rule abandoned-sms:" not in err
    code, _, _ = run(capsys, "check", "--strict", "--config", CONFIG, "--tests", path)
    assert code == 1


def test_check_with_tests_fails_when_a_case_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """It printed OK and exited 0 with a failing case: a bridge started on rules that fail
    their own tests."""
    failing = sms_case(expect=[{"rule": "abandoned-sms", "action": "identify", "body": SMS_BODY}])
    path = write(tmp_path, failing)
    code, out, err = run(capsys, "check", "--config", CONFIG, "--tests", path)
    assert code == 1 and "OK" not in out
    assert f"{CONFIG}: test failed: {path}: sms: command 1 (rule abandoned-sms): action: expected" in err


def test_run_with_tests_refuses_to_start_when_a_case_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --tests` ran the cases only on a reload: a bridge started on rules that fail
    their own tests. It is refused before it reads a record (no Kafka is needed to see it)."""
    monkeypatch.setenv("INTILERY_AUTH_TOKEN", "t")
    failing = sms_case(expect=[{"rule": "abandoned-sms", "action": "identify", "body": SMS_BODY}])
    code, _, err = run(capsys, "run", "--config", CONFIG, "--tests", write(tmp_path, failing))
    assert code == 2
    assert f"{CONFIG}: test failed: " in err and "action: expected 'identify'" in err


def test_a_test_file_s_problems_come_all_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`expected:` (for `expect:`) hid a bad topic, an unknown rule and a duplicate name."""
    path = write(
        tmp_path,
        {"name": "a", "event": SMS_EVENT, "expected": []},
        {"name": "a", "topic": "nope", "event": SMS_EVENT, "expect": []},
        {"name": "b", "event": SMS_EVENT, "expect": [{"rule": "no-such-rule", "body": {}}]},
    )
    code, _, err = run(capsys, "test", "--config", CONFIG, path)
    assert code == 2
    assert f"{path}: tests[0] (a).expected: unknown key; did you mean expect?" in err
    assert f"{path}: tests[1] (a).name: another case has this name" in err
    assert f"{path}: tests[1] (a).topic: nope is not in source.topics" in err
    assert f"{path}: tests[2] (b).expect[0].rule: no rule named 'no-such-rule' in {CONFIG}" in err


def safety_config(tmp_path: Path) -> str:
    """The example's rules, abandoned-sms with a dedupe by booking, and a cap of two SMS a day."""
    config = yaml.safe_load((EXAMPLES / "bridge.yaml").read_text())
    config["delivery"] = {
        **config.get("delivery", {}),
        "audit_topic": "bookings.intilery-audit",
        "dead_letter_topic": "bookings.intilery-dlq",
        "caps": [{"name": "sms-a-day", "commands": ["send_sms"], "max": 2, "window": "1d"}],
    }
    for rule in config["rules"]:
        if rule["name"] == "abandoned-sms":
            rule["dedupe"] = {"key": "{{ booking.id }}"}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_a_case_gives_the_dedupe_and_cap_state_it_assumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = safety_config(tmp_path)
    sms = sms_case()["expect"]
    cases = [
        sms_case(name="first"),
        sms_case(name="a copy", seen={"abandoned-sms": ["B-1"]}, expect=[]),
        sms_case(name="another booking seen", seen={"abandoned-sms": ["B-9"]}),
        sms_case(name="one left", sent_in_window={"sms-a-day": 1}),
        sms_case(name="at the cap", sent_in_window={"sms-a-day": 2}, expect=[]),
        sms_case(name="wrongly expected", sent_in_window={"sms-a-day": 2}, expect=sms),
    ]
    code, out, _ = run(capsys, "test", "--config", config, write(tmp_path, *cases))
    assert code == 1
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith(("PASS", "FAIL"))] == [
        *["PASS  " + str(tmp_path / "cases.yaml")] * 5,
        "FAIL  " + str(tmp_path / "cases.yaml"),
    ]
    assert "note: rule abandoned-sms: not sent, deduplicated: its dedupe key is in seen" in out
    assert "note: rule abandoned-sms: not sent, capped: over the cap sms-a-day (2)" in out
    assert "expected commands of rules ['abandoned-sms'], got []" in out


def test_a_case_naming_state_the_configuration_lacks_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    case = sms_case(seen={"abandoned-email": ["B-1"]}, sent_in_window={"sms-a-week": 1})
    path = write(tmp_path, case)
    code, _, err = run(capsys, "test", "--config", safety_config(tmp_path), path)
    assert code == 2
    where = f"{path}: tests[0] (sms)"
    assert f"{where}.seen.abandoned-email: no rule named 'abandoned-email' with a dedupe" in err
    assert f"{where}.sent_in_window.sms-a-week: no cap named 'sms-a-week'" in err
