"""A small Confluent-compatible schema registry for tests and the demo.

Speaks the subset of Confluent Schema Registry's REST API that producers'
serializers and the bridge use: register (``POST /subjects/{s}/versions``),
look up (``POST /subjects/{s}``), fetch by id (``GET /schemas/ids/{id}``),
list subjects and versions, and ``GET /config``. Errors carry Confluent's
``{"error_code": 40403, "message": ...}`` bodies.

For drills it counts look-ups by id (``fetches``) and can fail every request
with a status (``fail_status``) to play a registry outage.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from bridge.devtools.sandbox.server import QuietHTTPServer, server_tls


class RegistryState:
    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}
        self.ids_by_text: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.fetches: Counter[int] = Counter()
        self.fail_status: int | None = None
        self.lock = threading.Lock()

    def register(self, subject: str, body: dict[str, Any]) -> int:
        text = json.dumps(json.loads(body["schema"]), sort_keys=True, separators=(",", ":"))
        with self.lock:
            schema_id = self.ids_by_text.get(text)
            if schema_id is None:
                schema_id = len(self.schemas) + 1
                self.ids_by_text[text] = schema_id
                self.schemas[schema_id] = {
                    "schema": body["schema"],
                    "schemaType": body.get("schemaType", "AVRO"),
                }
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


_NOT_FOUND = (404, {"error_code": 40403, "message": "Schema not found"})
_NO_SUBJECT = (404, {"error_code": 40401, "message": "Subject not found"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/vnd.schemaregistry.v1+json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> tuple[int, Any]:
        state = self.server.state
        if state.fail_status is not None:
            return state.fail_status, {"error_code": state.fail_status * 100, "message": "injected outage"}
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        path = self.path.split("?")[0].rstrip("/")
        if method == "GET" and (m := re.fullmatch(r"/schemas/ids/(\d+)", path)):
            schema_id = int(m[1])
            state.fetches[schema_id] += 1
            found = state.schemas.get(schema_id)
            if found is None:
                return _NOT_FOUND
            return 200, found if found["schemaType"] != "AVRO" else {"schema": found["schema"]}
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
            return 200, {"id": state.register(m[1], body)}
        if method == "POST" and (m := re.fullmatch(r"/subjects/([^/]+)", path)):
            return self._lookup(m[1], body)
        if method == "GET" and path == "/subjects":
            return 200, sorted(state.subjects)
        if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions", path)):
            versions = state.subjects.get(m[1])
            return (200, list(range(1, len(versions) + 1))) if versions else _NO_SUBJECT
        if method == "GET" and (m := re.fullmatch(r"/subjects/([^/]+)/versions/(\w+)", path)):
            return self._version(m[1], m[2])
        if method == "GET" and path == "/config":
            return 200, {"compatibilityLevel": "BACKWARD"}
        return 404, {"error_code": 404, "message": "not found"}

    def _lookup(self, subject: str, body: dict[str, Any]) -> tuple[int, Any]:
        state = self.server.state
        text = json.dumps(json.loads(body["schema"]), sort_keys=True, separators=(",", ":"))
        schema_id = state.ids_by_text.get(text)
        versions = state.subjects.get(subject, [])
        if schema_id is None or schema_id not in versions:
            return _NOT_FOUND
        return 200, {
            "subject": subject,
            "id": schema_id,
            "version": versions.index(schema_id) + 1,
            "schema": state.schemas[schema_id]["schema"],
        }

    def _version(self, subject: str, version: str) -> tuple[int, Any]:
        versions = self.server.state.subjects.get(subject)
        if not versions:
            return _NO_SUBJECT
        index = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= index <= len(versions):
            return 404, {"error_code": 40402, "message": "Version not found"}
        schema_id = versions[index - 1]
        return 200, {
            "subject": subject,
            "id": schema_id,
            "version": index,
            "schema": self.server.state.schemas[schema_id]["schema"],
        }

    def do_GET(self) -> None:
        self._reply(*self._route("GET"))

    def do_POST(self) -> None:
        self._reply(*self._route("POST"))


class _Server(QuietHTTPServer):
    def __init__(self, address: tuple[str, int], state: RegistryState, tls: ssl.SSLContext | None) -> None:
        super().__init__(address, _Handler, tls)
        self.state = state


class LocalRegistry:
    """``with LocalRegistry() as registry: registry.url``; port 0 picks a free port."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS instead of HTTP."""
        self.state = RegistryState()
        self._host = host
        self._server = _Server((host, port), self.state, server_tls(*tls) if tls else None)
        self.port: int = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"

    def start(self) -> LocalRegistry:
        threading.Thread(target=self._server.serve_forever, name="registry", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
