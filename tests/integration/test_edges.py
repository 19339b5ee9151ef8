"""Outside bytes where they enter, on the real broker: a header name that is not UTF-8
(written through librdkafka itself, as any non-Python client can), and topics written by
a transactional producer (their last offset a marker never delivered), read to their end
by every offline reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from bridge.devtools.sandbox import Sandbox
from tests.rawkafka import RawProducer
from tests.support import (
    TestKafka,
    accepted,
    base_config,
    bridge_env,
    committed_and_ends,
    run_cli,
    sms_event,
    start_bridge,
    write_config,
)


def test_a_header_name_that_is_not_utf8_neither_stops_nor_loses_a_record(
    cluster: TestKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    raw = RawProducer(cluster.bootstrap_servers)
    for seq in range(60):  # enough for the interpreter to specialise the consumer's calls
        headers = [(b"\xff\xfeorigin", b"x"), (b"traceparent", b"nonsense")] if seq % 2 else [(b"ok", b"1")]
        raw.produce(cluster.topic, json.dumps(sms_event(seq, 3)).encode(), f"C-{seq % 3}".encode(), headers)
    raw.close()
    config = write_config(tmp_path, base_config(cluster, sandbox.url, "live"))
    bridge = start_bridge(config, tmp_path / "bridge.log", "--until-caught-up")
    assert bridge.wait(timeout=60) == 0, (tmp_path / "bridge.log").read_text()[-3000:]
    assert sorted(call["body"]["seq"] for call in accepted(sandbox)) == list(range(60))
    assert committed_and_ends(cluster.bootstrap_servers, "live", cluster.topic, 1) == [(60, 60)]
    unreadable = (tmp_path / "bridge.log").read_text().count('"record_headers_unreadable"')
    assert unreadable == 30


def transactional_topic(cluster: TestKafka, open_one: bool) -> Producer:
    """Six events in two committed transactions, then (``open_one``) one more in a
    transaction left open: the high watermark lies past what read_committed delivers."""
    cluster.create_topic(cluster.topic, 1)
    cluster.create_topic(cluster.dlq, 1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": cluster.topic})
    producer.init_transactions(30)
    for first in (0, 3):
        producer.begin_transaction()
        for seq in range(first, first + 3):
            producer.produce(cluster.topic, json.dumps(sms_event(seq, 3)).encode(), f"C-{seq % 3}")
        producer.commit_transaction(30)
    if open_one:
        producer.begin_transaction()
        producer.produce(cluster.topic, json.dumps(sms_event(99, 3)).encode(), b"C-0")
        producer.flush(30)
    return producer


@pytest.mark.timeout(120)
@pytest.mark.parametrize("open_one", [False, True], ids=["committed", "open-transaction"])
def test_offline_readers_end_on_a_transactional_topic(
    cluster: TestKafka,
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    open_one: bool,
) -> None:
    producer = transactional_topic(cluster, open_one)
    config = base_config(cluster, sandbox.url, "live")
    current = write_config(tmp_path, config)
    for name, value in bridge_env().items():
        monkeypatch.setenv(name, value)
    try:
        replay = ("replay", "--config", str(current), "--topic", cluster.topic, "--from-beginning")
        code, out, err = run_cli(capsys, *replay, "--dry-run")
        assert code == 0, err
        assert sorted(json.loads(line)["body"]["seq"] for line in out.splitlines()) == list(range(6))
        config["rules"][0]["emit"]["assetId"] = "ASSET-SMS-2"
        candidate = tmp_path / "candidate.yaml"
        candidate.write_text(json.dumps(config))
        diff = ("diff", "--config", str(current), "--candidate", str(candidate), "--last", "1h")
        code, out, err = run_cli(capsys, *diff, "--output", "json")
        assert code == 1, err
        assert json.loads(out)["records"] == 6
    finally:
        if open_one:
            producer.abort_transaction(30)
    assert accepted(sandbox) == []
