"""The real client (httpx over aiohttp) against a hostile Intilery on loopback: whatever it
answers is classified, bounded and encodable (tests/hostile.py writes the answers byte for
byte)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.errors import DeliveryError, RetryableError
from bridge.intilery.client import Delivered, IntileryClient
from tests.hostile import Answer, HostileServer
from tests.integration.test_client_sandbox import SMS, config


async def answered(server: HostileServer, longest_wait_s: float = 30.0) -> Delivered:
    client = IntileryClient(config(server.url, timeout=1), 2, longest_wait_s=longest_wait_s)
    try:
        return await client.post(SMS)
    finally:
        await client.close()


@pytest.mark.parametrize("retry_after", [b"315360000", b"inf", b"1e400", b"Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_is_honoured_up_to_the_longest_backoff(retry_after: bytes) -> None:
    answer = Answer(503, [(b"Retry-After", retry_after)], b"")
    with HostileServer(answer) as server, pytest.raises(RetryableError) as info:
        asyncio.run(answered(server, longest_wait_s=30.0))
    assert info.value.retry_after == 30.0


def test_a_retry_after_that_says_no_number_is_ignored() -> None:
    answer = Answer(503, [(b"Retry-After", b"nan")], b"")
    with HostileServer(answer) as server, pytest.raises(RetryableError) as info:
        asyncio.run(answered(server))
    assert info.value.retry_after is None


@pytest.mark.parametrize(
    ("event_id", "kept"),
    [
        ('"evt-\\udce9"', "evt-\\udce9"),  # a lone surrogate: valid JSON, not encodable
        ('"evt\\u0000\\n1"', "evt\\x00\\n1"),
        ("12345", "12345"),
        ('{"nested": [1]}', '{"nested": [1]}'),
        ('"' + "e" * 5000 + '"', "e" * 200),
    ],
)
def test_an_event_id_is_kept_as_text_that_always_encodes(event_id: str, kept: str) -> None:
    body = b'{"success": true, "eventId": ' + event_id.encode() + b"}"
    with HostileServer(Answer(200, [(b"Content-Type", b"application/json")], body)) as server:
        delivered = asyncio.run(answered(server))
    assert delivered.event_id == kept
    json.dumps({"eventId": delivered.event_id}, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, [(b"X-\xff\xfe", b"\x00\x01\xff")]),  # a header that is not text
        Answer(200, [(b"Content-Type", b"application/json")], b"[" * 100_000),  # deeper than the parser
        Answer(200, [], b"\xff\xfe not json"),
        Answer(200, [(b"Content-Length", b"100")], b"short", cut=60),  # cut short
        Answer(599, [], b"{}"),
        Answer(200, [(b"Content-Length", b"-5")], b""),
        Answer(200, [(b"Content-Encoding", b"gzip")], b"not gzip"),
        Answer(200, [], b"", delay_s=2.0),  # past the time-out
    ],
)
def test_any_answer_ends_as_delivered_or_a_delivery_error(answer: Answer) -> None:
    with HostileServer(answer) as server:
        try:
            delivered = asyncio.run(answered(server))
        except DeliveryError as exc:
            json.dumps(exc.reason).encode()
        else:
            assert delivered.status == 200
