"""Batch mode against the sandbox over real HTTP: size limits, splitting a
refused batch until the poisoned call is isolated, and the limiter keeping a
bridge under Intilery's bucket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bridge.config import BatchConfig, IntileryConfig
from bridge.devtools.sandbox import Sandbox
from bridge.errors import RejectedError
from bridge.intilery.batching import Batcher
from bridge.intilery.client import Delivered, IntileryClient
from bridge.model import Command
from tests.support import (
    TOKEN,
    CheckedProducer,
    TestKafka,
    accepted,
    base_config,
    start_bridge,
    write_config,
)


def command(user: str, filler: int = 0) -> Command:
    body = {"event": "send_sms", "userId": user, "assetId": "A", "pad": "x" * filler}
    return Command(rule="r", action="track", body=body, payload=json.dumps(body).encode())


async def post_all(
    sandbox: Sandbox, commands: list[Command], config: BatchConfig
) -> tuple[list[object], Batcher]:
    client = IntileryClient(
        IntileryConfig(url=sandbox.url, client_id="acme", account_id="acme", auth_token=TOKEN), 8
    )
    batcher = Batcher(client, config, 8)
    try:
        results = await asyncio.gather(*(batcher.post(c) for c in commands), return_exceptions=True)
    finally:
        await client.close()
    return list(results), batcher


def test_poisoned_call_in_the_middle_is_isolated(sandbox: Sandbox) -> None:
    sandbox.state.set_faults({"reject": {"userId": "poison"}})
    commands = [command(f"u{i}") for i in range(9)]
    commands[4] = command("poison")
    results, batcher = asyncio.run(post_all(sandbox, commands, BatchConfig(max_calls=100, linger_ms=10)))
    assert isinstance(results[4], RejectedError) and results[4].status == 400
    assert "sandbox reject rule matched userId" in results[4].reason
    assert all(isinstance(r, Delivered) for i, r in enumerate(results) if i != 4)
    assert sorted(c["body"]["userId"] for c in accepted(sandbox)) == sorted(
        f"u{i}" for i in range(9) if i != 4
    )
    assert batcher.splits >= 3  # 9 → 4+5 → 2+3 → 1+2 → the poisoned one alone


def test_batches_respect_max_calls_and_max_bytes(sandbox: Sandbox) -> None:
    results, batcher = asyncio.run(
        post_all(sandbox, [command(f"u{i}") for i in range(250)], BatchConfig(max_calls=100, linger_ms=10))
    )
    assert all(isinstance(r, Delivered) for r in results)
    sizes = [len(r["body"]["batch"]) for r in sandbox.state.listing("requests", 0)["requests"]]
    assert sorted(sizes) == [50, 100, 100] and batcher.requests == 3
    sandbox.state.clear()
    big = [command(f"u{i}", filler=3000) for i in range(40)]
    asyncio.run(post_all(sandbox, big, BatchConfig(max_calls=100, max_bytes=20_000, linger_ms=10)))
    requests = sandbox.state.listing("requests", 0)["requests"]
    assert all(len(json.dumps(r["body"], separators=(",", ":"))) <= 20_000 for r in requests)
    assert sum(len(r["body"]["batch"]) for r in requests) == 40 and len(requests) >= 7


@pytest.mark.parametrize("batch", [None, {"max_calls": 10, "linger_ms": 5}], ids=["one-per-request", "batch"])
def test_limiter_keeps_the_bridge_under_intilerys_bucket(
    cluster: TestKafka, tmp_path: Path, batch: dict[str, int] | None
) -> None:
    """The sandbox enforces 40/s burst 20; the bridge is configured the same: no 429."""
    cluster.create_topic(cluster.topic, 2)
    cluster.create_topic(cluster.dlq, 1)
    records = 300 if batch else 120
    producer = CheckedProducer(cluster.bootstrap_servers)
    for seq in range(records):
        event = {
            "type": "booking_viewed",
            "seq": seq,
            "customer": {"id": f"C-{seq % 9}"},
            "booking": {"id": "B"},
        }
        producer.produce(cluster.topic, key=f"C-{seq % 9}", value=json.dumps(event).encode())
    producer.flush()
    with Sandbox(token=TOKEN, rate=40, burst=20) as limited:
        config = base_config(cluster, limited.url, "limited", batch=batch)
        config["intilery"]["rate_limit"] = {"per_second": 40, "burst": 20}
        log_path = tmp_path / "bridge.log"
        assert (
            start_bridge(write_config(tmp_path, config), log_path, "--until-caught-up").wait(timeout=120) == 0
        )
        statuses = [a["status"] for a in limited.state.attempts]
        assert 429 not in statuses
        assert sorted(c["body"]["seq"] for c in accepted(limited)) == list(range(records))


def test_an_error_that_is_no_answer_fails_every_command_of_the_request(sandbox: Sandbox) -> None:
    """A pace that fails (say Redis' script error) used to leave the batch's futures for
    ever unresolved: every lane of its records hung."""

    async def failing_pace() -> None:
        raise ValueError("the pace's script failed")

    async def scenario() -> list[object]:
        settings = IntileryConfig(url=sandbox.url, client_id="acme", account_id="acme", auth_token=TOKEN)
        client = IntileryClient(settings, 8, pace=failing_pace)
        batcher = Batcher(client, BatchConfig(max_calls=100, linger_ms=10), 8)
        try:
            posts = asyncio.gather(
                *(batcher.post(command(f"u{i}")) for i in range(5)), return_exceptions=True
            )
            return list(await asyncio.wait_for(posts, 10))
        finally:
            await client.close()

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) and "ValueError" in str(r) for r in results), results
    assert accepted(sandbox) == []
