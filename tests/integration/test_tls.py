"""TLS: certificates are checked by default for Intilery and the schema registry;
a CA bundle can be trusted; turning checks off takes an explicit, logged setting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.config import IntileryConfig, TlsConfig
from bridge.decode.registry import SchemaRegistry
from bridge.devtools.registry import LocalRegistry
from bridge.devtools.sandbox import Sandbox
from bridge.errors import RetryableError
from bridge.intilery.client import IntileryClient
from tests.integration.test_client_sandbox import SMS
from tests.support import TOKEN
from tests.unit.test_config import GOOD, problems

TLS_DIR = Path(__file__).parent.parent / "tls"
CERT, KEY = str(TLS_DIR / "localhost.crt"), str(TLS_DIR / "localhost.key")
SCHEMA = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}'


@pytest.fixture
def https_sandbox() -> Iterator[Sandbox]:
    with Sandbox(token=TOKEN, rate=0, tls=(CERT, KEY)) as server:
        yield server


async def post(url: str, tls: dict[str, Any]) -> int:
    config = IntileryConfig(url=url, client_id="acme", account_id="acme", auth_token=TOKEN, tls=tls)  # type: ignore[arg-type]
    client = IntileryClient(config, 2)
    try:
        return (await client.post(SMS)).status
    finally:
        await client.close()


def test_intilery_certificate_is_checked_by_default(https_sandbox: Sandbox) -> None:
    assert https_sandbox.url.startswith("https://")
    with pytest.raises(RetryableError, match="connection failed"):
        asyncio.run(post(https_sandbox.url, {}))
    assert https_sandbox.state.accepted == []


def test_intilery_with_a_ca_bundle(https_sandbox: Sandbox) -> None:
    assert asyncio.run(post(https_sandbox.url, {"ca_file": CERT})) == 200


def test_intilery_without_checks_is_logged(https_sandbox: Sandbox) -> None:
    with capture_logs() as logs:
        assert asyncio.run(post(https_sandbox.url, {"verify": False})) == 200
    disabled = [log for log in logs if log["event"] == "tls_verification_disabled"]
    assert [(log["service"], log["url"], log["log_level"]) for log in disabled] == [
        ("intilery", https_sandbox.url, "warning")
    ]


@pytest.fixture
def https_registry() -> Iterator[tuple[LocalRegistry, int]]:
    with LocalRegistry(tls=(CERT, KEY)) as registry:
        schema_id = registry.state.register("r-value", {"schema": SCHEMA})
        yield registry, schema_id


def test_registry_certificate_is_checked_by_default(https_registry: tuple[LocalRegistry, int]) -> None:
    registry, schema_id = https_registry
    client = SchemaRegistry(registry.url)
    with pytest.raises(RetryableError, match="unreachable"):
        client.fetch(schema_id)
    client.close()
    assert registry.state.fetches[schema_id] == 0


def test_registry_with_a_ca_bundle_or_without_checks(https_registry: tuple[LocalRegistry, int]) -> None:
    registry, schema_id = https_registry
    with capture_logs() as logs:
        for tls in (TlsConfig(ca_file=CERT), TlsConfig(verify=False)):
            client = SchemaRegistry(registry.url, tls=tls)
            assert client.fetch(schema_id) is not None
            client.close()
    assert [log["service"] for log in logs if log["event"] == "tls_verification_disabled"] == [
        "schema_registry"
    ]


def test_tls_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    config = {**GOOD, "intilery": {**GOOD["intilery"], "tls": {"ca_file": str(tmp_path / "none.pem")}}}
    assert any("intilery.tls.ca_file: no such file" in p for p in problems(tmp_path, config))
    config["intilery"]["tls"] = {"ca_file": CERT, "verify": False}
    assert any(
        "intilery.tls" in p and "ca_file is unused with verify: false" in p
        for p in problems(tmp_path, config)
    )
