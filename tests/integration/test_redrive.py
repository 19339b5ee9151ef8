"""Redrive: after a rule is fixed, the dead-letter topic runs through the
current rules as if from its original topics; what fails again stays where it is
(never written again) and the run exits 1; a second run with nothing changed
sends nothing and writes nothing; filters pick which dead letters to redrive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.devtools.sandbox import Sandbox
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    produce_events,
    read_all,
    run_cli,
    sms_event,
    start_bridge,
    write_config,
)

ROOT = Path(__file__).parents[2]


def redrive(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "redrive", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=bridge_env(),
        timeout=120,
        cwd=ROOT,
    )


def test_redrive_after_a_fixed_rule(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(12):
        customer = {"id": f"C-{seq}"} if seq != 7 else {}  # seq 7 cannot be fixed by the new rule
        event = {"type": "letter", "seq": seq, "customer": customer}
        producer.produce(
            cluster.topic, key=f"C-{seq}", value=json.dumps(event).encode(), headers=[("trace", b"t")]
        )
    producer.flush()
    broken = base_config(cluster, sandbox.url, "live")
    broken["rules"] = [
        {
            "name": "letters",
            "when": "type == 'letter'",
            "emit": {
                "event": "send_print",
                "userId": "{{ customerId }}",
                "assetId": "A-PRINT",
                "seq": "{{ seq }}",
                "source": "{{ _kafka.topic }}",
                "trace": "{{ _kafka.headers.trace }}",
            },
        }
    ]
    (tmp_path / "v1").mkdir()
    v1 = write_config(tmp_path / "v1", broken)
    assert start_bridge(v1, tmp_path / "live.log", "--until-caught-up").wait(timeout=60) == 0
    assert accepted(sandbox) == []
    dead = read_all(cluster.bootstrap_servers, cluster.dlq)
    assert len(dead) == 12

    fixed = json.loads(json.dumps(broken))
    fixed["rules"][0]["emit"]["userId"] = "{{ customer.id }}"
    (tmp_path / "v2").mkdir()
    v2 = write_config(tmp_path / "v2", fixed)

    dry = redrive(v2, "--dry-run")
    assert dry.returncode == 1 and accepted(sandbox) == []  # 1: one record still fails
    assert len(dry.stdout.splitlines()) == 11 and "userId: required for send_print" in dry.stderr
    assert (
        "11 commands, 1 would stay in the dead-letter topic (nothing sent, nothing committed)" in dry.stderr
    )
    unknown = redrive(v2, "--rule", "no-such-rule", "--dry-run")  # exited 0, silently
    assert unknown.returncode == 2 and "--rule no-such-rule: no such rule in" in unknown.stderr

    dry = redrive(v2, "--dry-run")
    [reason] = [line for line in dry.stderr.splitlines() if "userId: required" in line]
    original = next(
        m for m in read_all(cluster.bootstrap_servers, cluster.topic, 2) if b'"seq": 7' in m.value()
    )
    seven = next(m for m in dead if json.loads(m.value())["seq"] == 7)
    named = f"{cluster.topic}[{original.partition()}]@{original.offset()}"
    assert reason.startswith(f"{named} (dead letter {cluster.dlq}[0]@{seven.offset()}): mapping: ")

    result = redrive(v2, "--rate", "5")
    assert result.returncode == 1, result.stderr  # one dead letter remains unrecovered
    times = sorted(r["at"] for r in accepted(sandbox))
    # --rate 5: 3.75 of a burst of 5 saved (a quarter second kept back), so the other 7.25 at
    # 5/s take at least 1.45 s
    assert times[-1] - times[0] >= 7.25 / 5 * 0.95
    bodies = sorted((r["body"] for r in accepted(sandbox)), key=lambda b: b["seq"])
    assert [b["seq"] for b in bodies] == [s for s in range(12) if s != 7]
    assert all(b["source"] == cluster.topic and b["trace"] == "t" for b in bodies), (
        "as if from the original topic"
    )
    assert f"redrive of {cluster.dlq}: 12 of 12 records read; 11 delivered, 0 dead-lettered" in result.stderr
    assert f"1 failing again, left in {cluster.dlq}" in result.stderr
    [failed] = [json.loads(line) for line in result.stdout.splitlines() if "redrive_failed_again" in line]
    assert (
        failed["offset"] == original.offset()
        and failed["dead_letter"] == f"{cluster.dlq}[0]@{seven.offset()}"
    )
    assert failed["reason"] == "userId: required for send_print"
    delivered = [json.loads(line) for line in result.stdout.splitlines() if '"command_delivered"' in line]
    assert len(delivered) == 11 and {e["topic"] for e in delivered} == {cluster.topic}  # the original's
    originals = {m.offset() for m in read_all(cluster.bootstrap_servers, cluster.topic, 2)}
    assert {e["offset"] for e in delivered} <= originals
    assert len(read_all(cluster.bootstrap_servers, cluster.dlq)) == 12  # nothing written back

    second = redrive(v2)  # nothing changed: nothing sent, nothing written, and it says so
    assert second.returncode == 1, second.stderr
    assert len(accepted(sandbox)) == 11 and len(read_all(cluster.bootstrap_servers, cluster.dlq)) == 12
    assert "0 delivered" in second.stderr and "nothing sent, nothing written" in second.stderr
    assert "1 failing again" in second.stderr
    dry_again = redrive(v2, "--dry-run")
    assert dry_again.stdout == "" and dry_again.returncode == 1  # only seq 7 is left, and it fails


def test_redrive_filters_pick_the_dead_letters(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path) -> None:
    """Dead letters of two classes: each filtered redrive takes its own and leaves the
    others for a later run; --source-topic and --rule narrow the same way."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(6):
        producer.produce(
            cluster.topic, key=f"C-{seq}", value=json.dumps(sms_event(seq, 6) | {"customer": {}}).encode()
        )
    producer.produce(cluster.topic, key="C-x", value=b"not json")
    producer.flush()
    config = base_config(cluster, sandbox.url, "filtered")
    assert (
        start_bridge(write_config(tmp_path, config), tmp_path / "live.log", "--until-caught-up").wait(60) == 0
    )
    assert len(read_all(cluster.bootstrap_servers, cluster.dlq)) == 7  # 6 mapping, 1 decode
    config["rules"][0]["emit"]["userId"] = "C-fixed"
    fixed = write_config(tmp_path, config)

    none = redrive(fixed, "--source-topic", "elsewhere")
    assert none.returncode == 0 and accepted(sandbox) == []
    assert "7 not selected by the filters" in none.stderr
    decode_only = redrive(fixed, "--error-class", "decode")
    assert decode_only.returncode == 1 and accepted(sandbox) == []  # the garbage fails again
    assert "1 failing again" in decode_only.stderr and "6 not selected" in decode_only.stderr
    mapping = redrive(
        fixed, "--error-class", "mapping", "--rule", "abandoned-sms", "--source-topic", cluster.topic
    )
    assert mapping.returncode == 0, mapping.stderr
    assert sorted(r["body"]["seq"] for r in accepted(sandbox)) == list(range(6))
    everything = redrive(fixed)  # from the one left: everything before it was redriven
    assert everything.returncode == 1 and len(accepted(sandbox)) == 6
    assert f"redrive of {cluster.dlq}: 1 of 1 record read" in everything.stderr
    assert "1 failing again" in everything.stderr and "nothing sent, nothing written" in everything.stderr
    assert len(read_all(cluster.bootstrap_servers, cluster.dlq)) == 7


def test_redrive_discard_acknowledges_what_can_never_succeed(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead letter no rule will ever decode made every redrive exit 1, forever: --discard
    acknowledges those the filters pick (a dry run lists them first), writes an audit entry
    for each, and the next redrive passes them over."""
    audit_topic = f"{cluster.topic}.audit"
    for topic in (cluster.topic, cluster.dlq, audit_topic):
        cluster.create_topic(topic, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, [sms_event(seq, 4) for seq in range(4)])
    producer = CheckedProducer(cluster.bootstrap_servers)
    producer.produce(cluster.topic, key="C-x", value=b"not json")
    producer.flush()
    sandbox.state.set_faults({"reject": {"bookingId": "B-2"}})  # C-2's SMS: refused for good
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "discards", audit_topic=audit_topic))
    assert start_bridge(config, tmp_path / "live.log", "--until-caught-up").wait(60) == 0
    assert len(accepted(sandbox)) == 3 and len(read_all(cluster.bootstrap_servers, cluster.dlq)) == 2

    dry = redrive(config, "--discard", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [json.loads(line) for line in dry.stdout.splitlines()]
    assert {(e["error_class"], e["source"]["offset"]) for e in listed} == {("rejected", 2), ("decode", 4)}
    assert "2 would be discarded (nothing discarded, nothing committed)" in dry.stderr
    assert redrive(config, "--dry-run").returncode == 1  # the dry run committed nothing

    rejected = redrive(config, "--discard", "--error-class", "rejected")
    assert rejected.returncode == 0, rejected.stderr
    assert "1 discarded, each with an audit entry, 1 not selected by the filters" in rejected.stderr
    [logged] = [json.loads(line) for line in rejected.stdout.splitlines() if "dead_letter_discarded" in line]
    at = next(e["dead_letter"]["offset"] for e in listed if e["error_class"] == "rejected")
    assert (logged["dead_letter"], logged["offset"], logged["userId"]) == (f"{cluster.dlq}[0]@{at}", 2, "C-2")
    again = redrive(config)  # the discarded one is passed over; the garbage still fails
    assert again.returncode == 1 and "1 done by an earlier run" in again.stderr
    assert len(accepted(sandbox)) == 3  # nothing discarded was sent
    assert redrive(config, "--discard").returncode == 0
    last = redrive(config)
    assert last.returncode == 0 and f"nothing to read in {cluster.dlq}" in last.stderr

    code, out, _ = run_cli(capsys, "trace", "--config", str(config), "--user", "C-2", "--output", "json")
    told = [(e["kind"], e["source"]["offset"]) for e in json.loads(out)["entries"]]
    assert code == 0 and told == [("dead_letter", 2), ("discarded", 2)]
    code, out, _ = run_cli(capsys, "trace", "--config", str(config), "--user", "C-2")
    assert "dead letter discarded, rejected: " in out.splitlines()[2]
