"""Schema registry look-ups, cached by id, translated into the bridge's errors.

Takes a schema id; gives an Avro :class:`~bridge.decode.avro.Reader` for the schema. Uses confluent-kafka's
``SchemaRegistryClient`` (real HTTP, Confluent's REST API, so Karapace and
Apicurio's ccompat API too) with its own retries off: the bridge retries with
its back-off and keeps the record waiting. Each id is fetched once; concurrent
waiters for one id share one request. The cache is bounded: the :data:`MAX_SCHEMAS`
used last are kept, and an unknown id is remembered for :data:`NOT_FOUND_TTL_S`, at most
:data:`MAX_NOT_FOUND` of them (record values can name any of 2^32 ids).

Raises :class:`~bridge.errors.DecodeError` when the registry does not know the
id (404) or the schema is not Avro, and :class:`~bridge.errors.RetryableError`
when the registry is unreachable or answers 5xx/429/401/403.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import structlog
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from bridge.config import SourceConfig, TlsConfig
from bridge.decode.avro import Reader, parse_schema_text
from bridge.decode.avrobounds import DEFAULT_MAX_DEPTH
from bridge.errors import DecodeError, RetryableError

log = structlog.get_logger("bridge.decode.registry")

NOT_FOUND_TTL_S = 60.0
MAX_SCHEMAS = 1000
MAX_NOT_FOUND = 1000


class SchemaRegistry:
    def __init__(
        self,
        url: str,
        basic_auth: str | None = None,
        client: Any = None,
        tls: TlsConfig | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        conf: dict[str, Any] = {"url": url, "max.retries": 0, "timeout": 10}
        if basic_auth:
            conf["basic.auth.user.info"] = basic_auth
        tls = tls or TlsConfig()
        if not tls.verify:
            conf["ssl.ca.location"] = False
            log.warning("tls_verification_disabled", service="schema_registry", url=url)
        elif tls.ca_file:
            conf["ssl.ca.location"] = tls.ca_file
        self._client = client or SchemaRegistryClient(conf)
        self._max_depth = max_depth
        self._schemas: OrderedDict[int, Reader] = OrderedDict()
        self._not_found: OrderedDict[int, tuple[float, DecodeError]] = OrderedDict()
        self._inflight: dict[int, asyncio.Task[Reader]] = {}
        self.requests = 0

    def cached(self, schema_id: int) -> Reader | None:
        reader = self._schemas.get(schema_id)
        if reader is not None:
            self._schemas.move_to_end(schema_id)
            return reader
        if schema_id in self._not_found:
            expires, error = self._not_found[schema_id]
            if time.monotonic() < expires:
                raise error
            del self._not_found[schema_id]
        return None

    def __len__(self) -> int:
        """Schemas and unknown ids held."""
        return len(self._schemas) + len(self._not_found)

    def _remember(self, schema_id: int, error: DecodeError) -> None:
        self._not_found[schema_id] = (time.monotonic() + NOT_FOUND_TTL_S, error)
        while len(self._not_found) > MAX_NOT_FOUND:
            self._not_found.popitem(last=False)

    async def ensure(self, schema_id: int) -> Reader:
        """Fetch the schema (once, however many records wait for it)."""
        schema = self.cached(schema_id)
        if schema is not None:
            return schema
        task = self._inflight.get(schema_id)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self.fetch, schema_id))
            self._inflight[schema_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(schema_id, None))
        return await asyncio.shield(task)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def fetch(self, schema_id: int) -> Reader:
        """One blocking look-up; caches the answer."""
        self.requests += 1
        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise self._translate(schema_id, exc) from exc
        except Exception as exc:  # httpx connection errors, timeouts
            raise RetryableError(f"schema registry unreachable: {type(exc).__name__}") from exc
        if registered.schema_type not in (None, "AVRO"):
            error = DecodeError(f"schema id {schema_id} is {registered.schema_type}, not Avro")
            self._remember(schema_id, error)
            raise error
        try:
            reader = Reader(parse_schema_text(str(registered.schema_str)), self._max_depth)
        except Exception as exc:  # not a schema, or one nested past Python's recursion limit
            error = DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc!r}"[:300])
            self._remember(schema_id, error)
            raise error from exc
        self._schemas[schema_id] = reader
        while len(self._schemas) > MAX_SCHEMAS:
            self._schemas.popitem(last=False)
        return reader

    def _translate(self, schema_id: int, exc: SchemaRegistryError) -> Exception:
        status = exc.http_status_code
        if status == 404:
            error = DecodeError(f"unknown schema id {schema_id} (schema registry 404: {exc.error_message})")
            self._remember(schema_id, error)
            return error
        return RetryableError(f"schema registry answered {status}: {exc.error_message}", status=status)


def registry_for(source: SourceConfig) -> SchemaRegistry | None:
    """The client of ``source.schema_registry`` when a topic is in the registry's wire
    format (Avro without a local schema); None when none is."""
    settings = source.schema_registry
    framed = any(topic.format == "avro" and not topic.schema_path for topic in source.resolved())
    if settings is None or not framed:
        return None
    auth = settings.basic_auth.get_secret_value() if settings.basic_auth else None
    return SchemaRegistry(settings.url, auth, tls=settings.tls, max_depth=source.avro_max_depth)
