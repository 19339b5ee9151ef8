"""A partition the consumer reads again from an earlier offset (an offset reset, or
librdkafka rewinding it after pause and resume, as a CI run caught): the records read
before are not sent again; the bridge goes on from the first record it had not read.

The bridge runs in this process, fed records directly: no broker can be made to rewind
on demand. Intilery is the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from structlog.testing import capture_logs

from bridge.devtools.sandbox import Sandbox
from bridge.model import Record
from bridge.ops.loading import load
from bridge.runtime.factory import build_bridge
from bridge.runtime.pipeline import Bridge
from tests.support import TOKEN, accepted, base_config, sms_event, write_config


def record(offset: int) -> Record:
    return Record("bookings", 0, offset, None, json.dumps(sms_event(offset, 5)).encode(), [], None)


async def feed(bridge: Bridge, offsets: list[int]) -> None:
    for offset in offsets:
        bridge.path.on_record(record(offset))
        await asyncio.sleep(0)


def test_records_read_again_after_a_rewind_are_not_sent_again(sandbox: Sandbox, tmp_path: Path) -> None:
    where: Any = SimpleNamespace(bootstrap_servers="127.0.0.1:9", topic="bookings", dlq="bookings.dlq")
    path = write_config(tmp_path, base_config(where, sandbox.url, "g"))
    loaded = load(str(path), env={"TEST_INTILERY_TOKEN": TOKEN})

    async def scenario() -> Bridge:
        bridge = build_bridge(loaded.config, loaded.mapper, "bridge.yaml", decoder=loaded.decoder)
        bridge.states.assign(("bookings", 0))
        await feed(bridge, [0, 1, 2, 3])
        await feed(bridge, [1, 2, 3, 4, 5])  # back to 1 while 0-3 are on the wire or done
        await feed(bridge, [2, 3, 6])  # and once more
        assert await bridge.states.wait(10)
        await bridge.release()
        return bridge

    with capture_logs() as logs:
        bridge = asyncio.run(scenario())
    sent = sorted(call["body"]["seq"] for call in accepted(sandbox))
    assert sent == [0, 1, 2, 3, 4, 5, 6]  # each once
    rewinds = [line for line in logs if line["event"] == "partition_rewound"]
    assert [(r["offset"], r["last_read"]) for r in rewinds] == [(1, 3), (2, 5)]
    assert bridge.counts["read_again"] == 5 and bridge.counts["consumed"] == 7
    (position,) = bridge.parts.checkpoint.committable(force=True)
    assert position.offset == 7  # everything read is finished: the commit passes it all
