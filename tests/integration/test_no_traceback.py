"""No traceback, ever: every verb, given what a new user or a careless script gives it
(files that are missing or not UTF-8, a broker that is not there, ports and certificates
that do not exist), ends in one line on stderr and a documented exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bridge.devtools.sandbox import Sandbox
from tests.support import TestKafka, base_config, bridge_env, produce_events, sms_event, write_config

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "bridge.yaml"
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1
DOCUMENTED = {1, 2, 4}  # the README's exit codes these cases may end in (5 would be a bug)


def verb(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        input=stdin,
        env={
            **os.environ,
            "INTILERY_AUTH_TOKEN": "t0ken-for-the-test",
            "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE,
        },
        cwd=ROOT,
        timeout=90,
    )
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


def test_every_verb_ends_in_one_line_and_a_documented_code(tmp_path: Path) -> None:
    latin1 = tmp_path / "events.jsonl"
    latin1.write_bytes('{"type": "booking_abandoned", "name": "Zoë"}\n'.encode("latin-1"))
    not_utf8 = tmp_path / "bridge.yaml"
    not_utf8.write_bytes(EXAMPLE.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    config = yaml.safe_load(EXAMPLE.read_text())
    config["kafka"]["bootstrap.servers"] = UNREACHABLE
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(yaml.safe_dump(config))
    (tmp_path / "tests.yaml").write_bytes(b"\xff\xfe")
    cases = {
        "run, no such file": (["run", "--config", "missing.yaml"], b""),
        "check, not UTF-8": (["check", "--config", str(not_utf8)], b""),
        "check, tests not UTF-8": (
            ["check", "--config", str(EXAMPLE), "--tests", str(tmp_path / "tests.yaml")],
            b"",
        ),
        "map, a file not UTF-8": (["map", "--config", str(EXAMPLE), str(latin1)], b""),
        "map, stdin not UTF-8": (["map", "--config", str(EXAMPLE)], latin1.read_bytes()),
        "map, no such file": (["map", "--config", str(EXAMPLE), "missing.jsonl"], b""),
        "test, no such file": (["test", "--config", str(EXAMPLE), "missing.yaml"], b""),
        "diff, no such file": (
            ["diff", "--config", str(EXAMPLE), "--candidate", str(EXAMPLE), "missing.jsonl"],
            b"",
        ),
        "diff, no broker": (
            ["diff", "--config", str(unreachable), "--candidate", str(EXAMPLE), "--last", "1h"],
            b"",
        ),
        "replay, no broker": (
            ["replay", "--config", str(unreachable), "--topic", "bookings", "--from-beginning", "--dry-run"],
            b"",
        ),
        "redrive, no broker": (["redrive", "--config", str(unreachable), "--dry-run"], b""),
        "demo, no broker": (["demo", "--bootstrap-servers", UNREACHABLE], b""),
        "sandbox, port out of range": (["sandbox", "--port", "99999"], b""),
        "sandbox, no such certificate": (
            ["sandbox", "--port", "0", "--tls-cert", "missing.pem", "--tls-key", "missing.key"],
            b"",
        ),
        "schema, unknown option": (["schema", "--nonsense"], b""),
        "trace, no broker": (["trace", "--config", str(unreachable), "--user", "C-1001"], b""),
    }
    with ThreadPoolExecutor(len(cases)) as pool:  # three of them wait 10 s for the broker
        results = dict(
            zip(cases, pool.map(lambda case: verb(*case[0], stdin=case[1]), cases.values()), strict=True)
        )
    for name, (code, output) in results.items():
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert code in DOCUMENTED, f"{name}: exit {code}\n{output}"
        # one line of its own; JSON lines are logs, and argparse prints its usage first
        lines = output.splitlines()
        own = [line for line in lines if line.strip() and not line.startswith(("{", "usage:", " "))]
        if name.startswith("map") and len(own) == 2:  # a line per failed event, then the summary
            assert own[1].startswith("map: ") and own[1].endswith(" 1 failed"), own
        else:
            assert len(own) == 1, f"{name}: {own}"
    # Kafka unreachable is 4 for every verb that asks it (diff said 2, as for a bad file)
    assert results["replay, no broker"][0] == results["demo, no broker"][0] == 4
    assert results["diff, no broker"][0] == 4
    assert results["diff, no such file"][0] == 2
    assert "intilery-bridge: stopped: Kafka: " in results["redrive, no broker"][1]
    assert "--tls-cert missing.pem: no such file" in results["sandbox, no such certificate"][1]
    assert "t0ken-for-the-test" not in "".join(output for _, output in results.values())


def test_a_closed_pipe_ends_the_verb_quietly(tmp_path: Path) -> None:
    """``map ... | head -1`` said ``unexpected error (a bug): BrokenPipeError`` and exit 5,
    which fails ``set -o pipefail`` scripts."""
    event = json.dumps(
        {
            "type": "booking_abandoned",
            "channel": "sms",
            "occurredAt": "2026-11-21T18:42:11.123Z",
            "customer": {"id": "C-1"},
            "booking": {"id": "B"},
        }
    )
    events = tmp_path / "events.jsonl"
    events.write_text((event + "\n") * 20_000)  # far more than a pipe holds
    for args in (["map", "--config", str(EXAMPLE), str(events)], ["schema"]):
        command = f"set -o pipefail; {sys.executable} -m bridge {' '.join(args)} | head -c 10 > /dev/null"
        result = subprocess.run(["bash", "-c", command], capture_output=True, cwd=ROOT, timeout=90)
        assert result.returncode == 0 and result.stderr == b"", (args, result.stderr[-500:])


def with_stdout_closed(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """The verb run with its standard output a pipe whose reader is gone before it starts,
    so its first write fails, whatever the output's size (``| head -1`` after the fact)."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bridge", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            input=stdin,
            cwd=ROOT,
            env=env,
            timeout=90,
        )
    finally:
        os.close(write)
    return result.returncode, result.stderr


def test_every_verb_that_prints_ends_quietly_on_a_closed_stdout(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """trace, replay --dry-run and the others said `unexpected error (a bug):
    BrokenPipeError`, exit 5, breaking `set -o pipefail` scripts."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    cluster.create_topic(cluster.topic + ".audit", 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, [sms_event(seq, 3) for seq in range(5)])
    config = base_config(cluster, sandbox.url, "closed-stdout")
    config["delivery"]["audit_topic"] = cluster.topic + ".audit"
    path = str(write_config(tmp_path, config))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(sms_event(seq, 3)) + "\n" for seq in range(5)))
    cases = tmp_path / "cases.yaml"
    cases.write_text(yaml.safe_dump({"tests": [{"name": "nothing", "event": {"type": "x"}, "expect": []}]}))
    verbs = {
        "check": ["check", "--config", path],
        "map": ["map", "--config", path, str(events)],
        "test": ["test", "--config", path, str(cases)],
        "diff": ["diff", "--config", path, "--candidate", path, str(events)],
        "schema": ["schema"],
        "schema --reference": ["schema", "--reference"],
        "trace": ["trace", "--config", path, "--user", "C-1"],
        "replay --dry-run": [
            "replay",
            "--config",
            path,
            "--topic",
            cluster.topic,
            "--from-beginning",
            "--dry-run",
        ],
        "redrive --dry-run": ["redrive", "--config", path, "--dry-run"],
        "redrive --discard --dry-run": ["redrive", "--config", path, "--discard", "--dry-run"],
    }
    for name, args in verbs.items():
        code, err = with_stdout_closed(*args, env=bridge_env())
        assert code == 0 and b"Traceback" not in err and b"a bug" not in err, (name, code, err[-800:])
