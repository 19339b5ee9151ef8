"""The sandbox's contract, checked on its state object (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.devtools.sandbox import SandboxState

PATH = "/track/acme/acme/ACME/v1/track"
HEADERS = {"auth-token": "tok", "content-type": "application/json"}
SMS = {"event": "send_sms", "userId": "u", "assetId": "a", "timestamp": "2019-11-18T13:30:12.984Z"}


def ask(state: SandboxState, body: Any, path: str = PATH, headers: dict[str, str] = HEADERS) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return state.handle(path, headers, raw)


def test_accepts_and_records() -> None:
    state = SandboxState("tok", rate=0)
    status, _, body = ask(state, SMS)
    assert status == 200 and body["success"] is True and len(body["eventId"]) == 36
    assert state.accepted[0]["body"] == SMS and state.accepted[0]["eventId"] == body["eventId"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"content-type": "application/json"}, "no token supplied"),
        (
            {"auth-token": "other", "content-type": "application/json"},
            "token not authorised for this account/brand",
        ),
    ],
)
def test_auth(headers: dict[str, str], message: str) -> None:
    assert ask(SandboxState("tok"), SMS, headers=headers) == (403, {}, {"success": False, "message": message})


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (PATH, {**SMS, "userId": ""}, 400, "userId must not be empty"),
        (PATH, {k: v for k, v in SMS.items() if k != "assetId"}, 400, "assetId must not be empty"),
        (
            PATH,
            {"event": "start_journey", "userId": "u", "properties": {}},
            400,
            "properties.journeyIdToTrigger must not be empty",
        ),
        (PATH, {**SMS, "timestamp": "2019-11-18 13:30"}, 400, "timestamp must be an ISO-8601 UTC time"),
        (PATH, b"{oops", 400, "body is not valid JSON"),
        (
            "/track/acme/acme/ACME/v1/identify",
            {"event": "send_sms", "userId": "u"},
            400,
            "event must be identify for the identify action",
        ),
        ("/track/ACME/acme/ACME/v1/track", SMS, 404, "clientId and accountId must be lower case"),
        ("/track/acme/acme/acme/v1/track", SMS, 404, "BRANDID must be upper case"),
        ("/track/acme/acme/ACME/v1/nope", SMS, 404, "unknown path"),
        (
            "/track/acme/acme/ACME/v1/batch",
            {"batch": [SMS, {**SMS, "assetId": ""}]},
            400,
            "batch[1]: assetId must not be empty",
        ),
        (PATH, {**SMS, "blob": "x" * (1024 * 1024)}, 413, "request too large"),
        (PATH, {**SMS, "event": "SEND_PRINT", "assetId": " "}, 400, "assetId must not be empty"),
        (PATH, {"event": "send_push", "assetId": "a"}, 400, "userId must not be empty"),
        (
            PATH,
            {"event": "Booking Confirmed", "properties": {}},
            400,
            "userId or anonymousId must not be empty",
        ),
        (PATH, {"event": "", "userId": "u"}, 400, "event must not be empty"),
        (
            "/track/acme/acme/ACME/v1/identify",
            {"event": "identify", "traits": {}},
            400,
            "userId must not be empty",
        ),
    ],
)
def test_validation(path: str, body: Any, status: int, message: str) -> None:
    assert ask(SandboxState("tok", rate=0), body, path=path) == (
        status,
        {},
        {"success": False, "message": message},
    )


def test_content_type_required() -> None:
    answer = ask(SandboxState("tok"), SMS, headers={"auth-token": "tok", "content-type": "text/plain"})
    assert answer[0] == 400


def test_token_bucket() -> None:
    state = SandboxState("tok", rate=1, burst=5)
    statuses = [ask(state, SMS)[0] for _ in range(7)]
    assert statuses == [200] * 5 + [429, 429]


def test_faults_fail_then_recover_and_drop() -> None:
    state = SandboxState("tok", rate=0)
    state.set_faults({"status": 503, "count": 2, "retry_after": 1.5})
    assert ask(state, SMS)[:2] == (503, {"Retry-After": "1.5"})
    assert ask(state, SMS)[0] == 503
    assert ask(state, SMS)[0] == 200
    state.set_faults({"drop": 1})
    assert ask(state, SMS) == "drop" and ask(state, SMS)[0] == 200
    assert [a["status"] for a in state.attempts] == [503, 503, 200, 0, 200]


def test_reject_rule() -> None:
    state = SandboxState("tok", rate=0)
    state.set_faults({"reject": {"userId": "bad"}})
    assert ask(state, {**SMS, "userId": "bad"})[0] == 400 and ask(state, SMS)[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        {**SMS, "event": "SEND_SMS"},  # the guide's example writes commands upper case
        {"event": "Booking Confirmed", "anonymousId": "anon-1"},
        {"event": "start_journey", "userId": "u", "properties": {"journeyIdToTrigger": "j"}},
    ],
)
def test_the_contract_table_accepts(body: dict[str, Any]) -> None:
    status, _, answer = ask(SandboxState("tok", rate=0), body)
    assert (status, answer["success"]) == (200, True), answer


def test_a_body_nested_past_the_parser_is_a_400_not_a_traceback() -> None:
    status, _, body = ask(SandboxState("tok", rate=0), b"[" * 100_000)
    assert (status, body["message"]) == (400, "body is nested too deeply")


def test_a_long_run_keeps_only_the_latest_requests_and_numbers_them_on() -> None:
    state = SandboxState("tok", rate=0, keep=10)
    for _ in range(25):
        assert ask(state, SMS)[0] == 200
    listing = state.listing("requests", 0)
    assert listing["total"] == 25 and len(state.accepted) <= 10 and len(state.attempts) <= 10
    assert [r["seq"] for r in listing["requests"]] == list(range(25 - len(state.accepted), 25))
    assert [r["seq"] for r in state.listing("requests", 23)["requests"]] == [23, 24]
    assert state.listing("requests", 25)["requests"] == []
