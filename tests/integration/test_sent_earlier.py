"""After a crash, on a real broker: the partition's last commit says since when its records
may have had commands sent; the next owner reads the audit topic's entries of its group
from then and does not send again a command an entry shows Intilery accepted (or, with
``skip_audited: false``, sends it and marks its entry ``resent``)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from bridge.devtools.sandbox import Sandbox
from bridge.kafka.consumer import consumer_config
from bridge.kafka.listener import SourceListener
from bridge.kafka.offsetmap import encode, read
from bridge.kafka.sentlog import SentEarlier, SentLog
from bridge.kafka.source import Source
from bridge.model import Record, TopicPartitionKey
from tests.integration.test_finished_map import commit, committed, seed
from tests.support import (
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    log_events,
    read_all,
    start_bridge,
    wait_for,
    write_config,
)

COMMITTED = 5
MINUTE_MS = 60_000


def write_audit(cluster: TestKafka, topic: str, entries: list[tuple[bytes, int]]) -> None:
    """Entries (a value, its timestamp in ms) as the crashed owner and others left them."""
    producer = CheckedProducer(cluster.bootstrap_servers)
    for value, timestamp in entries:
        producer.produce(topic, value=value, timestamp=timestamp)
    producer.flush()


def entry(group: str, topic: str, offset: int, rule: str = "abandoned-sms", **extra: Any) -> bytes:
    source = {"topic": topic, "partition": 0, "offset": offset}
    return json.dumps(
        {"eventId": f"E-{offset}", "rule": rule, "source": source, "group": group, **extra}
    ).encode()


@pytest.mark.parametrize("skip", [True, False], ids=["skipped", "resent-and-marked"])
def test_what_the_audit_topic_shows_sent_after_the_last_commit(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, skip: bool
) -> None:
    seqs = seed(cluster)  # offset -> seq, one partition
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(audit_topic, 2)
    group, topic = cluster.name("crashed"), cluster.topic
    now_ms = int(time.time() * 1000)
    since = now_ms - MINUTE_MS  # the crashed owner read its first unfinished record a minute ago
    commit(cluster, group, COMMITTED, encode(COMMITTED, [9], since_ms=since)[0])  # 9 finished
    write_audit(
        cluster,
        audit_topic,
        [
            (entry(group, topic, 6), now_ms - 30_000),  # sent after the commit: not again
            (entry(group, topic, 9), now_ms - 30_000),  # named finished by the map anyway
            (entry(group, topic, 7, window={"run": "replay"}), now_ms),  # a replay's
            (entry("another-group", topic, 8), now_ms),  # another deployment's
            (entry(group, topic, 10, rule="another-rule"), now_ms),  # another rule's command
            (entry(group, "other-topic", 11), now_ms),
            (entry(group, topic, 12), since - 10 * MINUTE_MS),  # before the commit's time
            (b"[" * 50_000, now_ms),  # whatever another writer left
            (b"\xff not json", now_ms),
        ],
    )
    delivery = {"audit_topic": audit_topic, "skip_audited": skip}
    config = write_config(tmp_path, base_config(cluster, sandbox.url, group, **delivery))
    log_path = tmp_path / "bridge.log"
    assert start_bridge(config, log_path, "--until-caught-up").wait(timeout=60) == 0

    events = log_events(log_path)
    sent = sorted(call["body"]["seq"] for call in accepted(sandbox))
    skipped = {6} if skip else set()
    assert sent == sorted(seqs[o] for o in range(COMMITTED, len(seqs)) if o != 9 and o not in skipped)
    [looked_up] = [e for e in events if e["event"] == "audit_looked_up"]
    assert looked_up["complete"] and looked_up["sent_earlier"] == 2  # offset 6's SMS, offset 10's other rule
    already = [(e["offset"], e["eventId"]) for e in events if e["event"] == "command_already_sent"]
    assert already == ([(6, "E-6")] if skip else [])
    values = [m.value() for m in read_all(cluster.bootstrap_servers, audit_topic, 2)]
    written = [json.loads(value) for value in values if value.startswith(b"{")]
    ours = {e["source"]["offset"]: e for e in written if e.get("sent_at")}
    assert sorted(ours) == [o for o in range(COMMITTED, len(seqs)) if o != 9 and o not in skipped]
    assert {o for o, e in ours.items() if e["resent"]} == ({6} - skipped)
    assert all(e["group"] == group for e in ours.values())
    final = committed(cluster, group)
    assert final.offset == len(seqs)
    after = read(final.metadata or "", final.offset)
    assert after is not None and after.since_ms == 0  # stopped with nothing unfinished: nothing to look up


class HeldLookUp:
    """The look-up's own consumer (a real one), held at its first step until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, conf: dict[str, Any]) -> Any:
        consumer = Consumer(conf)
        started, release = self.started, self.release

        class Held:
            def list_topics(self, *args: Any, **kwargs: Any) -> Any:
                started.set()
                assert release.wait(60), "never released"
                return consumer.list_topics(*args, **kwargs)

            def __getattr__(self, name: str) -> Any:
                return getattr(consumer, name)

        return Held()


class Told(SourceListener):
    def __init__(self) -> None:
        self.told: list[tuple[str, Any]] = []

    def sent_earlier(self, found: dict[TopicPartitionKey, SentEarlier]) -> None:
        self.told.append(("sent_earlier", sorted(found)))


def test_the_look_up_keeps_its_partition_waiting_not_the_others(cluster: TestKafka) -> None:
    """Partition 0's commit says commands may have been sent since: its records wait for the
    look-up (held here) while partition 1's, with nothing to look up, flow; the Kafka thread
    goes on fetching meanwhile."""
    cluster.create_topic(cluster.topic, 2)
    audit_topic = f"{cluster.topic}.audit"
    cluster.create_topic(audit_topic, 1)
    producer = CheckedProducer(cluster.bootstrap_servers)
    for n in range(20):
        producer.produce(cluster.topic, value=b"%d" % n, partition=n % 2)
    producer.flush()
    group = cluster.name("g")
    commit(cluster, group, 0, encode(0, [], since_ms=int(time.time() * 1000) - MINUTE_MS)[0])
    held, listener = HeldLookUp(), Told()
    conf = consumer_config(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": group, "auto.offset.reset": "earliest"}
    )
    sent_log = SentLog({"bootstrap.servers": cluster.bootstrap_servers}, audit_topic, group, factory=held)
    source = Source(conf, [cluster.topic], listener, sent_log=sent_log)
    source.start()
    records: list[Record] = []

    def fetched(partition: int, count: int) -> bool:
        records.extend(source.fetch(100).records)
        return sum(r.partition == partition for r in records) >= count

    try:
        wait_for(lambda: fetched(1, 10) and held.started.is_set(), 30, "partition 1's records")
        assert [r for r in records if r.partition == 0] == [] and listener.told == []
        held.release.set()
        wait_for(lambda: fetched(0, 10), 30, "partition 0's records once looked up")
        assert listener.told == [("sent_earlier", [(cluster.topic, 0)])]
    finally:
        held.release.set()
        source.close()
