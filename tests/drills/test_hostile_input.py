"""A stream where one record in ten is hostile: random bytes, truncated or
deeply nested JSON, invalid UTF-8, a tombstone, a 2 MB value, wrong field
types, or a field that makes a template render something huge. Every bad record
is dead-lettered with its reason, every good one delivered, and the process
never crashes."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.devtools.registry import LocalRegistry
from bridge.devtools.sandbox import Sandbox
from bridge.kafka.deadletter import VALUE_OMITTED
from tests import fuzzing
from tests.drills.support import (
    PARTITIONS,
    DrillBridge,
    Outcome,
    assert_no_secret_in_headers,
    assert_offsets_at_end,
    delivered_seqs,
    drill_config,
    header_seq,
    report,
    rss_mb,
)
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    committed_and_ends,
    log_events,
    read_all,
    sms_event,
    wait_for,
    write_config,
)

BIG = 2 * 1024 * 1024


def _good(seq: int) -> bytes:
    return json.dumps(sms_event(seq, 50)).encode()


# kind -> (the record's value, the error class and a word of the reason it is dead-lettered with)
HOSTILE: dict[str, tuple[Callable[[int, random.Random], bytes | None], str, str]] = {
    "random bytes": (lambda seq, rng: rng.randbytes(rng.randint(1, 300)), "decode", ""),
    "truncated json": (lambda seq, rng: _good(seq)[: rng.randint(1, 60)], "decode", "invalid JSON"),
    "deep nesting": (
        lambda seq, rng: b'{"a":' * (1_200_000 // 6) + b"1" + b"}" * (1_200_000 // 6),
        "decode",
        "nested",
    ),
    "invalid utf-8": (
        lambda seq, rng: _good(seq).replace(b"booking_abandoned", b"booking_\xff\xfe"),
        "decode",
        "UTF-8",
    ),
    "tombstone": (lambda seq, rng: None, "decode", "tombstone"),
    "not an object": (lambda seq, rng: b"[1, 2, 3]", "decode", "expected an object"),
    "wrong types": (
        lambda seq, rng: json.dumps({**sms_event(seq, 50), "customer": f"C-{seq}"}).encode(),
        "mapping",
        "userId",
    ),
    "huge render": (
        lambda seq, rng: json.dumps({**sms_event(seq, 50), "booking": {"id": "x" * 36_000}}).encode(),
        "mapping",
        "bytes",
    ),
    "2 MB value": (
        lambda seq, rng: json.dumps(
            {**sms_event(seq, 50), "booking": {"id": "B", "notes": "y" * BIG}}
        ).encode(),
        "",  # a big event whose command is small: delivered
        "",
    ),
}


def produce_hostile(
    producer: CheckedProducer,
    topic: str,
    seqs: range,
    rng: random.Random,
    hostile: dict[int, tuple[str, bytes | None]],
) -> None:
    """Every tenth record hostile, cycling through the kinds; records seq -> (kind, value)."""
    kinds = list(HOSTILE)
    for seq in seqs:
        if seq % 10 == 9:
            kind = kinds[(seq // 10) % len(kinds)]
            value = HOSTILE[kind][0](seq, rng)
            hostile[seq] = (kind, value)
        else:
            value = _good(seq)
        producer.produce(topic, key=f"C-{seq % 50}", value=value, headers={"seq": str(seq)})
        producer.poll(0)
    assert producer.flush() == 0


CHUNK = 500  # produced while the bridge runs


@pytest.mark.parametrize(
    "records", [pytest.param(500, id="short"), pytest.param(5000, id="long", marks=pytest.mark.slow)]
)
def test_hostile_input(
    drill_cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, drill_bridge: DrillBridge, records: int
) -> None:
    bootstrap = drill_cluster.bootstrap_servers
    producer = CheckedProducer(bootstrap, {"linger.ms": 20, "message.max.bytes": 3 * BIG})
    rng, hostile = random.Random(records), {}
    log_path = tmp_path / "bridge.log"
    config = write_config(tmp_path, drill_config(drill_cluster, sandbox, "hostile"))
    started = time.monotonic()
    with drill_bridge(config, log_path) as process:
        for start in range(0, records, CHUNK):
            produce_hostile(producer, drill_cluster.topic, range(start, start + CHUNK), rng, hostile)
            bad = {seq for seq, (kind, _) in hostile.items() if HOSTILE[kind][1]}
            good, bad_count = set(range(start + CHUNK)) - bad, len(bad)
            wait_for(lambda g=good: delivered_seqs(sandbox) >= g, 60, "good delivered")
            wait_for(lambda b=bad_count: _dead_lettered(log_path) >= b, 60, "bad ones dead-lettered")
        elapsed = time.monotonic() - started
        assert process.poll() is None, "the bridge must still be running"
    delivered = Counter(r["body"]["seq"] for r in accepted(sandbox))
    assert set(delivered) == good
    dead = read_all(bootstrap, drill_cluster.dlq)
    assert_no_secret_in_headers(dead)
    dead_by_seq = {header_seq(m): m for m in dead}
    assert set(dead_by_seq) == bad and len(dead) == len(bad)
    omitted = 0
    for seq, message in dead_by_seq.items():
        kind, value = hostile[seq]
        headers = dict(message.headers())
        reason = headers["x-bridge-error-reason"].decode()
        assert headers["x-bridge-error-class"].decode() == HOSTILE[kind][1], (kind, reason)
        assert HOSTILE[kind][2] in reason, (kind, reason)
        if VALUE_OMITTED in headers:  # too large for the dead-letter topic: the source offset says where
            assert message.value() is None and headers[VALUE_OMITTED] == f"{len(value or b'')} bytes".encode()
            omitted += 1
        else:
            assert message.value() == value, kind
    assert omitted == sum(
        1 for kind, value in hostile.values() if kind == "deep nesting" and len(value or b"") > 10**6
    )
    assert omitted >= 1
    assert_offsets_at_end(drill_cluster, "hostile")
    kinds = [e["event"] for e in log_events(log_path)]
    assert "delivery_crashed" not in kinds and "bridge_failed" not in kinds
    lost = records - len(set(delivered) | set(dead_by_seq))
    outcome = Outcome(records, lost, sum(n - 1 for n in delivered.values()), len(dead))
    report(
        "7 hostile input, 1 in 10 bad",
        outcome,
        None,
        f"{len(HOSTILE)} kinds, each bad one dead-lettered with its reason ({omitted} too large for the "
        f"dead-letter topic written without value); {elapsed:.1f} s in all",
    )


def _dead_lettered(log_path: Path) -> int:
    return sum(1 for e in log_events(log_path) if e["event"] == "command_dead_lettered")


def produce_kept(
    producer: CheckedProducer, topics: dict[str, str], rounds: int, first_seq: int
) -> tuple[list[int], int]:
    """Every input kept in tests/corpus/, each record between good events on its key, ``rounds``
    times; gives the good events' seqs and how many hostile records went out. Header names are
    sent as UTF-8 with what is not valid escaped (the client cannot send a lone surrogate;
    the fuzzing harness covers that case), and record times are the producer's."""
    goods = []
    hostile = 0
    seq = first_seq
    for _ in range(rounds):
        for _, batch in fuzzing.load_corpus():
            for bad in batch:
                key = bad.key if bad.key is not None else b"C-0"
                for record in (None, bad):
                    if record is None:
                        event = {**sms_event(seq, 50), "customer": {"id": f"C-{seq}"}}
                        value = json.dumps(event).encode()
                        producer.produce(topics[fuzzing.JSON_TOPIC], key=key, value=value)
                        goods.append(seq)
                        seq += 1
                    else:
                        headers = [(n.encode("utf-8", "backslashreplace"), v) for n, v in record.headers]
                        producer.produce(topics[record.topic], key=key, value=record.value, headers=headers)
                        hostile += 1
                producer.poll(0)
    assert producer.flush() == 0
    return goods, hostile


@pytest.mark.parametrize(
    "rounds", [pytest.param(1, id="short"), pytest.param(4, id="long", marks=pytest.mark.slow)]
)
def test_every_kept_hostile_input_on_the_real_broker(
    drill_cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, drill_bridge: DrillBridge, rounds: int
) -> None:
    """The fuzzing corpus (the kinds of issue 21 and what make fuzz found) through a running
    bridge: JSON, Avro through the registry (a recursive schema among four) and plain Avro,
    between good events on the same keys. The process never exits by itself, every good
    command arrives once, commits reach the end of every partition, RSS stays under 300 MB."""
    topics = {fuzzing.JSON_TOPIC: drill_cluster.topic}
    for name in (fuzzing.AVRO_TOPIC, fuzzing.PLAIN_TOPIC):
        topics[name] = drill_cluster.name(name)
        drill_cluster.create_topic(topics[name], 1, **{"max.message.bytes": str(8 << 20)})
    (tmp_path / "node.avsc").write_text(json.dumps(fuzzing.RECURSIVE))
    with LocalRegistry() as registry:
        for schema_id, text in fuzzing._schemas().items():
            assert registry.state.register(f"s{schema_id}", {"schema": text}) == schema_id
        config = drill_config(drill_cluster, sandbox, "kept")
        config["source"] = {
            "topics": [
                topics[fuzzing.JSON_TOPIC],
                {"name": topics[fuzzing.AVRO_TOPIC], "format": "avro"},
                {"name": topics[fuzzing.PLAIN_TOPIC], "format": "avro", "schema": "node.avsc"},
            ],
            "format": "json",
            "schema_registry": {**config["source"]["schema_registry"], "url": registry.url},
        }
        producer = CheckedProducer(drill_cluster.bootstrap_servers, {"message.max.bytes": 3 * BIG})
        log_path = tmp_path / "bridge.log"
        with drill_bridge(config, log_path) as process:
            goods, hostile = produce_kept(producer, topics, rounds, 100_000)
            peak = 0.0

            def settled() -> bool:
                nonlocal peak
                peak = max(peak, rss_mb(process.pid))
                bootstrap = drill_cluster.bootstrap_servers
                return delivered_seqs(sandbox) >= set(goods) and all(
                    committed == end
                    for name, topic in topics.items()
                    for committed, end in committed_and_ends(
                        bootstrap, "kept", topic, PARTITIONS if name == fuzzing.JSON_TOPIC else 1
                    )
                )

            wait_for(settled, 120, "good events delivered and commits at every end")
            assert process.poll() is None, "the bridge must still be running"
    sent = Counter(r["body"]["seq"] for r in accepted(sandbox))
    duplicated = sum(sent[seq] - 1 for seq in goods)
    assert duplicated == 0 and all(sent[seq] == 1 for seq in goods)
    events = log_events(log_path)
    dead = [e for e in events if e["event"] == "command_dead_lettered"]
    assert "delivery_crashed" not in {e["event"] for e in events} and dead
    assert peak < 300, f"RSS {peak:.0f} MB"
    classes = Counter(e["error_class"] for e in dead)
    report(
        "7b hostile input: every kept fuzzing input",
        Outcome(len(goods) + hostile, 0, duplicated, len(dead)),
        None,
        f"{len(fuzzing.load_corpus())} kept inputs x {rounds}: {hostile} hostile records (JSON, Avro through "
        f"the registry, plain Avro) between {len(goods)} good events; dead letters by class "
        f"{dict(sorted(classes.items()))}; peak RSS {peak:.0f} MB",
    )
