"""The dead-letter topic cannot be written: first it does not exist (and the
cluster will not create it), then the broker refuses the writes. The bridge
commits nothing past a record it could not dead-letter, loses nothing, retries,
and says so in the logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devtools.kafka import KafkaCluster
from bridge.devtools.kafkanode import AUTHORIZER
from bridge.devtools.sandbox import Sandbox
from tests.drills.support import (
    PARTITIONS,
    DrillBridge,
    Outcome,
    assert_no_commit_past,
    assert_no_secret_in_headers,
    assert_offsets_at_end,
    delivered_seqs,
    drill_config,
    header_seq,
    report,
)
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    log_events,
    read_all,
    sms_event,
    wait_for,
)

POISON_EVERY = 20


def produce_with_poison(cluster: TestKafka, count: int) -> dict[tuple[int, int], int]:
    """Every twentieth record is not JSON; gives (partition, offset) -> seq."""
    bootstrap = cluster.bootstrap_servers
    producer = CheckedProducer(bootstrap, {"linger.ms": 20})
    for seq in range(count):
        value = b"not json" if seq % POISON_EVERY == 7 else json.dumps(sms_event(seq, 50)).encode()
        producer.produce(cluster.topic, key=f"C-{seq % 50}", value=value, headers={"seq": str(seq)})
        producer.poll(0)
    producer.flush()
    return {
        (m.partition(), m.offset()): header_seq(m) for m in read_all(bootstrap, cluster.topic, PARTITIONS)
    }


def assert_no_commit_past_unfinished(
    cluster: TestKafka, sandbox: Sandbox, at: dict[tuple[int, int], int], dead_letter_topic: bool = True
) -> None:
    """Every record below each committed offset was delivered or dead-lettered."""
    finished = delivered_seqs(sandbox)
    if dead_letter_topic:
        finished |= {header_seq(m) for m in read_all(cluster.bootstrap_servers, cluster.dlq)}
    assert_no_commit_past(cluster, "dlqdown", at, finished)


@pytest.fixture
def cluster() -> Iterator[TestKafka]:
    """A broker of this drill's own, with an authorizer so that it can refuse writes."""
    with KafkaCluster(settings=AUTHORIZER) as broker:
        yield TestKafka(broker)


@pytest.mark.parametrize(
    ("records", "fault_s"),
    [pytest.param(400, 3, id="short"), pytest.param(4000, 20, id="long", marks=pytest.mark.slow)],
)
def test_dead_letter_topic_cannot_be_written(
    cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    drill_bridge: DrillBridge,
    records: int,
    fault_s: float,
) -> None:
    broker = cluster.backend
    assert isinstance(broker, KafkaCluster)
    cluster.create_topic(cluster.topic, PARTITIONS)  # and no dead-letter topic
    at = produce_with_poison(cluster, records)
    poison = {seq for seq in at.values() if seq % POISON_EVERY == 7}
    config = drill_config(cluster, sandbox, "dlqdown", max_buffered_records=records // 4)
    config["kafka"]["allow.auto.create.topics"] = False
    config["kafka"]["topic.metadata.refresh.interval.ms"] = 1000
    config["kafka"]["message.timeout.ms"] = 2000  # how long a dead letter may wait for the broker
    log_path = tmp_path / "bridge.log"
    with drill_bridge(config, log_path):
        # 1. The topic is missing.
        wait_for(lambda: _failures(log_path) >= 1, 60, "a failed dead-letter write to be logged")
        time.sleep(fault_s)
        assert_no_commit_past_unfinished(cluster, sandbox, at, dead_letter_topic=False)
        missing_failures = _failures(log_path)
        # 2. The topic exists, but the broker refuses writes for a while (an ACL).
        broker.refuse_writes(cluster.dlq)
        broker.create_topic(cluster.dlq, 1, wait=False)  # metadata is refused too
        time.sleep(fault_s)
        assert_no_commit_past_unfinished(cluster, sandbox, at)
        assert read_all(cluster.bootstrap_servers, cluster.dlq) == []
        broker.refuse_writes(cluster.dlq, refuse=False)
        recovered_at = time.monotonic()
        wait_for(
            lambda: len(read_all(cluster.bootstrap_servers, cluster.dlq)) >= len(poison),
            60,
            "dead letters",
        )
        recover_s = time.monotonic() - recovered_at
        wait_for(lambda: len(delivered_seqs(sandbox)) >= records - len(poison), 60, "all")
    dead = read_all(cluster.bootstrap_servers, cluster.dlq)
    assert_no_secret_in_headers(dead)
    dead_seqs = [header_seq(m) for m in dead]
    delivered = [r["body"]["seq"] for r in accepted(sandbox)]
    assert set(dead_seqs) == poison and set(delivered) == set(at.values()) - poison
    for message in dead:
        headers = dict(message.headers())
        assert (
            headers["x-bridge-error-class"] == b"decode"
            and b"invalid JSON" in headers["x-bridge-error-reason"]
        )
    assert_offsets_at_end(cluster, "dlqdown")
    failures = [e for e in log_events(log_path) if e["event"] == "dead_letter_write_failed"]
    reasons = " ".join(e["error"] for e in failures)
    assert "Message timed out" in reasons and "authorization failed" in reasons and missing_failures >= 1
    outcome = Outcome(
        records,
        records - len(set(delivered) | set(dead_seqs)),
        len(delivered) - len(set(delivered)) + len(dead_seqs) - len(set(dead_seqs)),
        len(dead),
    )
    report(
        f"9 dead-letter topic missing {fault_s:g} s, then refusing writes {fault_s:g} s",
        outcome,
        recover_s,
        f"failed writes retried, logged once per error per 10 s ({len(failures)} lines); no commit past them",
        broker="Kafka (an ACL refuses the writes)",
    )


def _failures(log_path: Path) -> int:
    return sum(1 for e in log_events(log_path) if e["event"] == "dead_letter_write_failed")
