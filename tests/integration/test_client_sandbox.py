"""The Intilery client against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from bridge.config import IntileryConfig
from bridge.devtools.sandbox import Sandbox
from bridge.errors import AuthError, RejectedError, RetryableError
from bridge.intilery.client import Delivered, IntileryClient
from bridge.model import Command
from tests.support import TOKEN, wait_for

SMS = Command(
    rule="r",
    action="track",
    payload=b'{"event":"send_sms","userId":"u","assetId":"a"}',
    body={"event": "send_sms", "userId": "u", "assetId": "a"},
)
IDENTIFY = Command(
    rule="i",
    action="identify",
    payload=b'{"event":"identify","userId":"u","traits":{}}',
    body={"event": "identify", "userId": "u", "traits": {}},
)


def config(url: str, token: str = TOKEN, timeout: float = 5) -> IntileryConfig:
    return IntileryConfig(url=url, client_id="Acme", account_id="acme", auth_token=token, timeout_s=timeout)


async def post(url: str, command: Command = SMS, **kwargs: object) -> Delivered:
    client = IntileryClient(config(url, **kwargs), 4)  # type: ignore[arg-type]
    try:
        return await client.post(command)
    finally:
        await client.close()


def test_posts_to_the_documented_path_with_headers(sandbox: Sandbox) -> None:
    delivered = asyncio.run(post(sandbox.url))
    identify = asyncio.run(post(sandbox.url, IDENTIFY))
    assert delivered.status == 200 and delivered.event_id and identify.event_id != delivered.event_id
    paths = [a["path"] for a in sandbox.state.attempts]
    assert paths == ["/track/acme/acme/ACME/v1/track", "/track/acme/acme/ACME/v1/identify"]
    assert [r["action"] for r in sandbox.state.accepted] == ["track", "identify"]


def test_wrong_token_is_auth_error(sandbox: Sandbox) -> None:
    with pytest.raises(AuthError) as info:
        asyncio.run(post(sandbox.url, token="wrong"))
    assert info.value.status == 403 and "wrong" not in str(info.value)


def test_400_is_rejected_with_message(sandbox: Sandbox) -> None:
    bad = Command(rule="r", action="track", payload=b'{"event":"send_sms","userId":"u"}', body={})
    with pytest.raises(RejectedError, match="assetId must not be empty"):
        asyncio.run(post(sandbox.url, bad))


def test_injected_faults_are_retryable(sandbox: Sandbox) -> None:
    sandbox.state.set_faults({"status": 503, "count": 1})
    with pytest.raises(RetryableError) as info:
        asyncio.run(post(sandbox.url))
    assert info.value.status == 503
    sandbox.state.set_faults({"drop": 1})
    with pytest.raises(RetryableError, match="connection failed"):
        asyncio.run(post(sandbox.url))
    sandbox.state.set_faults({"latency_ms": 1500})
    with pytest.raises(RetryableError, match="timed out"):
        asyncio.run(post(sandbox.url, timeout=0.3))


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match="connection failed"):
        asyncio.run(post(f"http://127.0.0.1:{port}"))


def test_control_endpoints_over_http(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        assert http.post("/_sandbox/faults", json={"status": 502, "count": 1}).json()["count"] == 1
        answer = http.post(
            "/track/acme/acme/ACME/v1/track",
            content=SMS.payload,
            headers={"auth-token": TOKEN, "content-type": "application/json"},
        )
        assert answer.status_code == 502
        http.post(
            "/track/acme/acme/ACME/v1/track",
            content=SMS.payload,
            headers={"auth-token": TOKEN, "content-type": "application/json"},
        )
        assert http.get("/_sandbox/requests").json()["total"] == 1
        assert [a["status"] for a in http.get("/_sandbox/attempts").json()["attempts"]] == [502, 200]
        assert http.delete("/_sandbox/requests").status_code == 200
        assert http.get("/_sandbox/requests").json() == {"requests": [], "total": 0}


def test_control_endpoints_refuse_bad_input(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        assert http.get("/_sandbox/requests?since=abc").status_code == 400
        for body in (b'{"bogus": 1}', b"notjson", b'{"status": "x"}', b"[1]"):
            answer = http.post("/_sandbox/faults", content=body)
            assert answer.status_code == 400 and answer.json()["success"] is False
        http.post("/_sandbox/faults", json={"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"})
        assert http.get("/_sandbox/faults").json()["count"] > 10**9, "a status without a count lasts"
        answer = http.post(
            "/track/acme/acme/ACME/v1/track",
            content=SMS.payload,
            headers={"auth-token": TOKEN, "content-type": "application/json"},
        )
        assert answer.status_code == 429 and answer.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
        http.delete("/_sandbox/faults")
        assert http.get("/_sandbox/faults").json()["status"] is None


def test_oversized_declared_body_is_refused_without_reading_it(sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as conn:
        conn.sendall(
            b"POST /track/acme/acme/ACME/v1/track HTTP/1.1\r\nHost: x\r\ncontent-length: 99999999\r\n\r\n{}"
        )
        assert conn.recv(200).startswith(b"HTTP/1.1 413")


def test_a_timeout_stretches_the_timeout_of_the_requests_after_it(sandbox: Sandbox) -> None:
    """A retry sent with the timeout that just expired would likely be taken by Intilery
    and time out again: a duplicate each round. The next requests wait longer."""

    async def main() -> None:
        settings = config(sandbox.url, timeout=0.3).model_copy(update={"max_timeout_s": 1.0})
        client = IntileryClient(settings, 2)
        try:
            sandbox.state.set_faults({"latency_ms": 450})
            with pytest.raises(RetryableError, match="timed out"):
                await client.post(SMS)
            assert client.timeout_s == pytest.approx(0.6)
            assert (await client.post(SMS)).status == 200  # answered in 450 ms: no second duplicate
            assert client.timeout_s == pytest.approx(0.6)
            sandbox.state.set_faults({"latency_ms": 0})
            await client.post(SMS)
            assert client.timeout_s == pytest.approx(0.3)  # fast answers bring it back
            sandbox.state.set_faults({"latency_ms": 1500})
            for _ in range(3):
                with pytest.raises(RetryableError):
                    await client.post(SMS)
            assert client.timeout_s == pytest.approx(1.0)  # never past max_timeout_s
        finally:
            await client.close()

    asyncio.run(main())


def test_a_connection_refused_does_not_stretch_the_timeout() -> None:
    """Nothing reached Intilery: no duplicate to avoid (it stretched as a time-out did)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once the socket closes

    async def main() -> None:
        client = IntileryClient(config(f"http://127.0.0.1:{port}", timeout=0.3), 2)
        try:
            for _ in range(3):
                with pytest.raises(RetryableError, match="connection failed"):
                    await client.post(SMS)
            assert client.timeout_s == pytest.approx(0.3)
        finally:
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("length", [b"x", b"-5", b"1e3", b"\xd9\xa3"])  # the last: an Arabic-Indic digit
def test_a_content_length_that_is_no_whole_number_is_answered_400_at_once(
    sandbox: Sandbox, length: bytes
) -> None:
    """It answered with a traceback, or (negative) waited for ever for the body."""
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            b"POST /track/acme/acme/ACME/v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + length
            + b"\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):  # it closes the connection after answering
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ") and b"content-length must be a whole number" in answer


def test_the_sandbox_counts_requests_open_and_the_client_keeps_to_its_bound(sandbox: Sandbox) -> None:
    """Each attempt says how many requests were open as it arrived: eight posted at once by
    a client allowed four connections find four open at most, and four at some point."""
    sandbox.state.set_faults({"latency_ms": 200})

    async def eight() -> None:
        client = IntileryClient(config(sandbox.url), 4)
        try:
            await asyncio.gather(*(client.post(SMS) for _ in range(8)))
        finally:
            await client.close()

    asyncio.run(eight())
    open_counts = [a["open"] for a in sandbox.state.attempts]
    assert len(open_counts) == 8 and max(open_counts) == 4 and min(open_counts) >= 1
    wait_for(lambda: sandbox.state.open == 0, 10, "every request answered")  # after each answer
