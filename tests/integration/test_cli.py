"""The verbs as users call them: `check` and `map` (offline), `--help`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import __version__
from tests.support import REGISTRY_AUTH, SASL_PASSWORD, SECRETS, TOKEN

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "bridge.yaml"


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("verb", ["run", "check", "map", "test", "schema", "sandbox", "demo"])
def test_every_verb_has_help(verb: str) -> None:
    result = cli(verb, "--help")
    assert result.returncode == 0 and "usage: intilery-bridge" in result.stdout


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"intilery-bridge {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__), "the installed package's version"


def test_check_accepts_the_example() -> None:
    result = cli("check", "--config", str(EXAMPLE), env={"INTILERY_AUTH_TOKEN": "secret-value-123"})
    assert result.returncode == 0, result.stderr
    assert "OK (7 rules" in result.stdout and "secret-value-123" not in result.stdout + result.stderr


def test_check_reports_one_line_per_problem(tmp_path: Path) -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["rules"][1]["emit"].pop("assetId")
    config["rules"][2]["when"] = "type =="
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("check", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{path}: rules[1] (abandoned-sms).emit.assetId: required for send_sms"
    assert lines[1].startswith(f"{path}: rules[2] (abandoned-email).when: invalid JMESPath 'type =='")
    assert len(lines) == 2 and "Traceback" not in result.stderr


def test_check_needs_no_secrets_unless_required() -> None:
    """A rules repository's CI has no production secrets; a deploy step asks for them."""
    env = {k: v for k, v in os.environ.items() if k != "INTILERY_AUTH_TOKEN"}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bridge", "check", "--config", str(EXAMPLE), *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

    relaxed = check()
    assert relaxed.returncode == 0, relaxed.stderr
    assert "OK (7 rules" in relaxed.stdout
    assert "intilery.auth_token: environment variable INTILERY_AUTH_TOKEN is not set (fine for check" in (
        relaxed.stderr
    )
    required = check("--require-env")
    assert required.returncode == 1
    assert required.stderr.strip().splitlines() == [
        f"{EXAMPLE}: intilery.auth_token: environment variable INTILERY_AUTH_TOKEN is not set"
    ]


def test_run_refuses_bad_config_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kafka: {bootstrap.servers: x}\n")
    result = cli("run", "--config", str(path))
    assert result.returncode == 2 and f"{path}: source: required" in result.stderr


def test_map_prints_commands_and_reports_failures() -> None:
    events = [
        {
            "type": "booking_abandoned",
            "channel": "sms",
            "occurredAt": "2026-01-02T03:04:05+01:00",
            "customer": {"id": "C-1"},
            "booking": {"id": "B-1", "value": 10},
        },
        {"type": "booking_abandoned", "channel": "sms", "customer": {}, "booking": {"id": "B-2"}},
        {
            "type": "booking_abandoned",
            "channel": "sms",
            "customer": {"id": "C-3"},
            "booking": {"id": "B-3"},
            "_kafka": {"timestamp": 1574083812984},
        },
    ]
    stdin = "\n".join(json.dumps(e) for e in events) + "\nnot json\n"
    result = cli("map", "--config", str(EXAMPLE), "-", stdin=stdin)
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0] == {
        "rule": "abandoned-sms",
        "action": "track",
        "body": {
            "event": "send_sms",
            "userId": "C-1",
            "assetId": "202007-B-AbandonedBooking",
            "timestamp": "2026-01-02T02:04:05.000Z",
            "bookingId": "B-1",
            "booking": {"id": "B-1", "value": 10},
        },
    }
    assert out[1]["body"]["userId"] == "C-3"
    assert out[1]["body"]["timestamp"] == "2019-11-18T13:30:12.984Z"  # from the event's _kafka override
    assert len(out) == 2
    assert result.stderr.splitlines() == [
        "line 2: mapping: rule abandoned-sms: userId: required for send_sms",
        "line 3: rule abandoned-sms: fields absent from the event, left out: occurredAt",  # the record's time
        "line 4: decode: invalid JSON: Expecting value (line 1, column 1)",
        "map: 4 events read, 2 commands, 0 matched no rule, 2 failed",
    ]
    viewed = json.dumps({"type": "booking_viewed", "customer": {"id": "C-9"}})
    quiet = cli("map", "--config", str(EXAMPLE), "-", stdin=viewed + "\n")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert quiet.stderr.splitlines() == ["map: 1 event read, 0 commands, 1 matched no rule, 0 failed"]


def test_map_topic_selects_rules(tmp_path: Path) -> None:
    event = {"type": "app_reminder", "customer": {"id": "C-1"}, "message": "hi", "occurredAt": 0}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n")
    assert cli("map", "--config", str(EXAMPLE), str(events)).stdout == ""
    result = cli("map", "--config", str(EXAMPLE), "--topic", "app-events", str(events))
    assert result.returncode == 0
    assert json.loads(result.stdout)["body"]["timestamp"] == "1970-01-01T00:00:00.000Z"


AVRO_EXAMPLE = ROOT / "examples" / "bridge-avro.yaml"


def test_map_avro_json_form_with_the_topic_schema() -> None:
    result = cli(
        "map",
        "--config",
        str(AVRO_EXAMPLE),
        "--topic",
        "app-events-avro",
        "--format",
        "avro",
        str(ROOT / "examples/avro-events/app_reminder.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"] == {
        "event": "send_push",
        "userId": "C-2001",
        "assetId": "202101-P-Reminder",
        "timestamp": "2026-12-17T08:30:00.000Z",
        "message": "Your stay starts tomorrow",
        "deepLink": "acme://bookings/B-7001",
    }


def test_map_avro_registry_topic_needs_a_schema_file() -> None:
    args = ["map", "--config", str(AVRO_EXAMPLE), "--topic", "bookings-avro", "--format", "avro"]
    events = str(ROOT / "examples/avro-events/booking_abandoned.jsonl")
    assert "give --schema" in cli(*args, events).stderr
    result = cli(*args, "--schema", str(ROOT / "schemas/booking_abandoned.avsc"), events)
    assert result.returncode == 0, result.stderr
    bodies = [json.loads(line)["body"] for line in result.stdout.splitlines()]
    assert bodies[0]["total"] == "420.50" and bodies[0]["checkIn"] == "2026-12-18"
    assert [b["event"] for b in bodies] == ["send_sms", "send_email", "start_journey"]


def test_check_loads_every_local_schema(tmp_path: Path) -> None:
    config = yaml.safe_load(AVRO_EXAMPLE.read_text())
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "name": "R", "fields": [{"name": "x"}]}')
    config["source"]["topics"][1]["schema"] = str(bad)
    path = tmp_path / "avro.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("check", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: source.topics[1] (app-events-avro).schema: ")
    assert "not a valid Avro schema" in result.stderr
    assert cli("check", "--config", str(AVRO_EXAMPLE), env={"INTILERY_AUTH_TOKEN": "t"}).returncode == 0


def test_map_missing_file_is_a_clean_error() -> None:
    result = cli("map", "--config", str(EXAMPLE), "no-such-file.jsonl")
    assert (
        result.returncode == 2
        and result.stderr.strip() == "no-such-file.jsonl: cannot read: No such file or directory"
    )


def test_run_refuses_a_property_librdkafka_rejects(tmp_path: Path) -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["kafka"]["no.such.property"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}: kafka.no.such.property: No such configuration property")


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    """Problems are reported without the secrets the configuration holds, wherever they sit."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["kafka"] |= {"sasl.password": "${TEST_SASL_PASSWORD}", "group.id": "${TEST_SASL_PASSWORD}"}
    config["source"]["schema_registry"] = {
        "url": "${TEST_REGISTRY_AUTH}",
        "basic_auth": "${TEST_REGISTRY_AUTH}",
    }
    config["intilery"]["url"] = "${INTILERY_AUTH_TOKEN}"  # a secret where it does not belong
    config["rules"][0]["when"] = "type =="
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        "INTILERY_AUTH_TOKEN": TOKEN,
        "TEST_SASL_PASSWORD": SASL_PASSWORD,
        "TEST_REGISTRY_AUTH": REGISTRY_AUTH,
    }
    result = cli("check", "--config", str(path), env=env)
    assert (
        result.returncode == 1 and "intilery.url" in result.stderr and "schema_registry.url" in result.stderr
    )
    assert not [s for s in SECRETS if s in result.stdout + result.stderr], result.stderr


@pytest.fixture
def busy_port() -> Any:
    """A loopback port another process already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_run_on_a_busy_observability_port_is_one_line(tmp_path: Path, busy_port: int) -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["observability"] = {"host": "127.0.0.1", "port": busy_port}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"observability.port: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]
    logged = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["port"] for e in logged if e["event"] == "observability_port_unavailable"] == [busy_port]


def test_sandbox_on_a_busy_port_is_one_line(busy_port: int) -> None:
    result = cli("sandbox", "--port", str(busy_port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"--port {busy_port}: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    ]


@pytest.mark.parametrize(
    ("args", "said"), [((), "the default, sandbox-token"), (("--token", "t-123"), "as given with --token")]
)
def test_sandbox_banner_says_which_token(args: tuple[str, ...], said: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "bridge", "sandbox", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().strip()
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert banner == f"intilery sandbox listening on http://127.0.0.1:{port} (token: {said})"
    assert "t-123" not in banner


def test_check_warns_of_a_double_quoted_value_and_strict_fails(tmp_path: Path) -> None:
    """In JMESPath "booking_abandoned" is a field name: the rule would never match."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["rules"][1]["when"] = "type == \"booking_abandoned\" && channel == 'sms'"
    path = tmp_path / "quoted.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    warning = (
        f'{path}: warning: rules[1] (abandoned-sms).when: "booking_abandoned" is a field name in JMESPath, '
        "not text; to compare with the text write 'booking_abandoned'"
    )
    relaxed = cli("check", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert relaxed.returncode == 0 and relaxed.stderr.strip().splitlines() == [warning]
    strict = cli("check", "--strict", "--config", str(path), env={"INTILERY_AUTH_TOKEN": "t"})
    assert strict.returncode == 1 and strict.stderr.strip().splitlines() == [warning]
    clean = cli("check", "--strict", "--config", str(EXAMPLE), env={"INTILERY_AUTH_TOKEN": "t"})
    assert clean.returncode == 0 and clean.stderr == ""


def test_check_the_avro_example_from_another_directory(tmp_path: Path) -> None:
    """Its local schema path is taken from the config file's folder, not the current one."""
    config = ROOT / "examples" / "bridge-avro.yaml"
    command = [sys.executable, "-m", "bridge", "check", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK (" in result.stdout


HOSTILE_TIMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01", int("1" * 401)]


def test_map_and_test_give_the_same_reason_for_a_time_past_either_end(tmp_path: Path) -> None:
    """Each of these raised OverflowError: map and test printed a traceback."""
    events = [
        {"type": "booking_abandoned", "channel": "sms", "occurredAt": when, "customer": {"id": "C-1"}}
        for when in HOSTILE_TIMES
    ]
    mapped = cli("map", "--config", str(EXAMPLE), "-", stdin="\n".join(json.dumps(e) for e in events) + "\n")
    assert mapped.returncode == 1 and "Traceback" not in mapped.stderr
    reasons = [line for line in mapped.stderr.splitlines() if line.startswith("line ")]
    assert len(reasons) == 3 and all("mapping: rule abandoned-sms: timestamp:" in r for r in reasons)
    assert all("out of range" in r for r in reasons)
    cases = tmp_path / "times.yaml"
    cases.write_text(
        json.dumps(
            {
                "tests": [
                    {
                        "name": f"time {n}",
                        "event": event,
                        "expect_error": {
                            "class": "mapping",
                            "rule": "abandoned-sms",
                            "reason_contains": reason.split("timestamp: ", 1)[1],
                        },
                    }
                    for n, (event, reason) in enumerate(zip(events, reasons, strict=True))
                ]
            }
        )
    )
    tested = cli("test", "--config", str(EXAMPLE), str(cases))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Traceback" not in tested.stderr and "3 passed" in tested.stdout


def test_map_reports_a_line_that_is_not_utf8_as_that_line_s_decode_error(tmp_path: Path) -> None:
    """From a file it raised UnicodeDecodeError, from stdin UnicodeEncodeError: tracebacks."""
    good = json.dumps({"type": "booking_abandoned", "channel": "sms", "customer": {"id": "C-1"}}).encode()
    data = good + b"\n" + b'{"type": "\xff\xfe"}\n' + good + b"\n"
    (tmp_path / "events.jsonl").write_bytes(data)
    for source in (str(tmp_path / "events.jsonl"), "-"):
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "map", "--config", str(EXAMPLE), source],
            input=data if source == "-" else None,
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
        err = result.stderr.decode()
        assert result.returncode == 1 and "Traceback" not in err, err
        assert "line 2: decode: value is not valid UTF-8 (byte 10)" in err
        assert len(result.stdout.decode().splitlines()) == 2


@pytest.mark.parametrize("value", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(value: str) -> None:
    """sandbox --port 99999 raised OverflowError from the socket layer."""
    result = cli("sandbox", "--port", value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --port:" in result.stderr
