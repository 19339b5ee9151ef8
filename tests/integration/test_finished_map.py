"""Finished offsets in the commit's metadata, on a real broker: a bridge assigned a
partition whose last commit names finished records skips exactly those; metadata it
cannot read (another tool's, a newer format) is ignored with one warning and skips
nothing; the commits the bridge writes carry the map."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.devtools.kafka import KafkaCluster
from bridge.devtools.sandbox import Sandbox
from bridge.kafka.consumer import consumer_config
from bridge.kafka.listener import SourceListener
from bridge.kafka.offsetmap import decode, encode
from bridge.kafka.source import Source
from bridge.model import Position
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    eventually,
    log_events,
    produce_events,
    read_all,
    sms_event,
    start_bridge,
    write_config,
)

RECORDS = 30
OFFSET_COMMIT = 8  # Kafka API key


def seed(cluster: TestKafka) -> dict[int, int]:
    """One partition of sms events; offset -> seq."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 7) for seq in range(RECORDS)))
    return {
        m.offset(): json.loads(m.value())["seq"] for m in read_all(cluster.bootstrap_servers, cluster.topic)
    }


def commit(cluster: TestKafka, group: str, offset: int, metadata: str) -> None:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
    consumer.commit(offsets=[TopicPartition(cluster.topic, 0, offset, metadata=metadata)], asynchronous=False)
    consumer.close()


def committed(cluster: TestKafka, group: str) -> TopicPartition:
    """The group's commit of partition 0 (asked again while the group's coordinator moves:
    NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS on a new broker)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})

    def answered() -> TopicPartition | None:
        try:
            [found] = consumer.committed([TopicPartition(cluster.topic, 0)], timeout=10)
        except KafkaException:
            return None
        return found

    try:
        return eventually(answered, 60, f"the group coordinator to answer for {group}")
    finally:
        consumer.close()


def run_to_the_end(cluster: TestKafka, sandbox: Sandbox, tmp_path: Path, group: str) -> list[dict]:
    config = write_config(tmp_path, base_config(cluster, sandbox.url, group) | {"log": {"level": "debug"}})
    log_path = tmp_path / f"{group}.log"
    assert start_bridge(config, log_path, "--until-caught-up").wait(timeout=60) == 0
    return log_events(log_path)


def test_the_records_the_map_names_are_skipped_and_only_those(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    seqs = seed(cluster)
    group = cluster.name("mapped")
    finished = [6, 7, 9, 15, 16, 17, 29]
    metadata, _ = encode(5, finished)
    commit(cluster, group, 5, metadata)
    events = run_to_the_end(cluster, sandbox, tmp_path, group)
    sent = sorted(call["body"]["seq"] for call in accepted(sandbox))
    assert sent == sorted(seqs[o] for o in range(5, RECORDS) if o not in finished)
    skipped = sorted(e["offset"] for e in events if e["event"] == "record_already_finished")
    assert skipped == finished
    [summary] = [e for e in events if e["event"] == "bridge_summary"][-1:]
    assert summary["already_finished"] == len(finished)
    final = committed(cluster, group)
    assert final.offset == RECORDS and decode(final.metadata or "", final.offset) == set()


def test_metadata_the_bridge_cannot_read_skips_nothing(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    seed(cluster)
    newer = "ib3b" + encode(5, [6, 7])[0][4:]
    for number, metadata in enumerate(["written by another tool", newer, "ib1b!!corrupt"]):
        group = cluster.name(f"foreign{number}")
        commit(cluster, group, 5, metadata)
        sandbox.state.clear()
        events = run_to_the_end(cluster, sandbox, tmp_path, group)
        assert len(accepted(sandbox)) == RECORDS - 5, metadata  # nothing skipped
        warnings = [e for e in events if e["event"] == "offset_metadata_unreadable"]
        assert len(warnings) == 1 and warnings[0]["committed"] == 5
        assert metadata not in json.dumps(warnings[0])  # its length only: it may hold anything


def test_a_commit_with_records_unfinished_names_those_finished_after_them(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Intilery refuses one customer's commands for a while (retried); the others finish,
    and the commits meanwhile name them."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    produce_events(cluster.bootstrap_servers, cluster.topic, (sms_event(seq, 7) for seq in range(21)))
    sandbox.state.set_faults({"unavailable": {"userId": "C-0"}})
    group = cluster.name("held")
    config = write_config(tmp_path, base_config(cluster, sandbox.url, group))
    process = start_bridge(config, tmp_path / "held.log")
    try:
        offset, named = wait_for_map(cluster, group, 18)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert offset == 0  # record 0 (customer C-0) is not finished
    assert named == {o for o in range(21) if o % 7 != 0}  # every other customer's record is


def wait_for_map(cluster: TestKafka, group: str, size: int) -> tuple[int, set[int]]:
    def named_finished() -> tuple[int, set[int]] | None:
        found = committed(cluster, group)
        named = decode(found.metadata or "", found.offset) if found.offset >= 0 else None
        return (found.offset, named) if named and len(named) == size else None

    return eventually(named_finished, 30, f"a commit of {group} naming {size} finished offsets")


def test_replay_and_redrive_leave_the_live_groups_commit_and_map_alone(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """They read with groups of their own; the live group's offset and map stay as they were."""
    seed(cluster)
    live = cluster.name("live")
    metadata, _ = encode(5, [6, 9])
    commit(cluster, live, 5, metadata)
    config = write_config(tmp_path, base_config(cluster, sandbox.url, live))
    for verb, *args in (("replay", "--topic", cluster.topic, "--from-beginning"), ("redrive",)):
        command = [sys.executable, "-m", "bridge", verb, "--config", str(config), *args]
        result = subprocess.run(command, capture_output=True, text=True, env=bridge_env(), timeout=120)
        assert result.returncode == 0, result.stderr
    assert len(accepted(sandbox)) == RECORDS  # the replay sent every record, the map notwithstanding
    after = committed(cluster, live)
    assert (after.offset, after.metadata) == (5, metadata)


class Refusals(SourceListener):
    def __init__(self) -> None:
        self.too_large: list[int | None] = []
        self.positions: list[Position] = []

    def map_too_large(self, refused_bytes: int | None) -> None:
        self.too_large.append(refused_bytes)

    def committed(self, positions: list[Position]) -> None:
        self.positions += positions


def test_a_broker_with_a_smaller_metadata_bound_tells_the_source_how_large_a_map_it_refused() -> None:
    """offset.metadata.max.bytes below Kafka's default (4,096) refuses a commit whose map is
    larger, partition by partition (asynchronous) or as a whole (synchronous): the source
    says so with the size refused (the tracker then halves its bound, test_offsets), and a
    map within the bound is taken."""
    with KafkaCluster(settings={"offset.metadata.max.bytes": "256"}) as broker:
        broker.create_topic("t", 1)
        listener = Refusals()
        conf = consumer_config({"bootstrap.servers": broker.bootstrap_servers, "group.id": "g"})
        source = Source(conf, ["t"], listener)
        source.start()
        deadline = time.monotonic() + 30
        while not source.assigned or not listener.positions:  # with the start position committed
            assert time.monotonic() < deadline, "no assignment"
            source.fetch(10)
        assert [p.offset for p in listener.positions] == [0]  # the group's first position
        listener.positions.clear()
        big, small = encode(0, list(range(1, 4000, 2)))[0], encode(0, [1, 3])[0]
        assert len(big) > 256 >= len(small)
        assert source.commit([Position("t", 0, 0, big)], wait=False)
        while not listener.too_large:
            assert time.monotonic() < deadline, "the refusal never came"
            source.fetch(10)
        assert listener.too_large == [len(big)] and not listener.positions
        assert source.commit([Position("t", 0, 0, big)], wait=True) is False
        assert listener.too_large == [len(big), len(big)]
        assert source.commit([Position("t", 0, 0, small)], wait=True) is True
        assert [p.offset for p in listener.positions] == [0]
        source.close()


def test_after_a_map_is_refused_as_too_large_the_bridge_bounds_its_maps_and_commits_on(
    mock_cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The mock cluster, because only it refuses a given number of commits whatever their
    size (a real broker refuses by size: the test above): at each refusal the bridge bounds
    its maps below the size refused (half the bound for an empty one; a map of a few bytes
    means none), says so, and its offsets still reach the end."""
    seed(mock_cluster)
    mock_cluster.backend.push_request_errors(OFFSET_COMMIT, [KafkaError.OFFSET_METADATA_TOO_LARGE] * 2)
    group = mock_cluster.name("bounded")
    events = run_to_the_end(mock_cluster, sandbox, tmp_path, group)
    shrunk = [e for e in events if e["event"] == "offset_map_too_large"]
    limits = [e["limit_bytes"] for e in shrunk]
    assert 1 <= len(limits) <= 2 and limits == sorted(limits, reverse=True) and limits[0] < 4096
    bound = 4096
    for event in shrunk:  # half of what was refused, or of the bound when the map was empty
        refused = event["refused_bytes"] or bound
        bound = refused // 2 if refused // 2 >= 64 else 0
        assert event["limit_bytes"] == bound
    assert committed(mock_cluster, group).offset == RECORDS
