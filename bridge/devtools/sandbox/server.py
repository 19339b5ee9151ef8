"""The sandbox: Intilery's contract over real HTTP, with fault injection.

It answers ``POST /track/{client}/{account}/{BRAND}/v1/{action}`` the way
Intilery documents: 403 without the right ``auth-token``, 400 for a wrong
content-type, bad JSON or a body that breaks the command contract
(``{"success": false, "message": ...}``), 413 over 1 MB, 429 past the token
bucket, and ``{"success": true, "eventId": <uuid>}`` otherwise.

Control endpoints (no token needed), for tests and curious users:

- ``GET /_sandbox/requests[?since=N]``: the accepted calls, in arrival order (``at``:
  when each arrived, Unix seconds; ``traceparent`` and ``tracestate`` when sent).
- ``GET /_sandbox/attempts[?since=N]``: every request with its status and time.
- ``DELETE /_sandbox/requests``: forget both lists.
- ``POST /_sandbox/faults``: ``{"status": 503, "count": 5, "retry_after": 2}``
  fails the next requests; ``{"latency_ms": 20}`` delays every answer;
  ``{"drop": 3}`` closes the next connections without answering;
  ``{"reject": {"userId": "C-9"}}`` answers 400 to calls with those fields;
  ``{"unavailable": {"userId": "C-9"}}`` answers 503 to them (retried: held back).
  A ``status`` without a ``count`` lasts until cleared; ``GET /_sandbox/faults``
  shows the current faults.
- ``DELETE /_sandbox/faults``: back to normal.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.devtools.sandbox.state import Faults, SandboxState
from bridge.devtools.sandbox.validation import MAX_REQUEST_BYTES


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the state records requests
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _declared(self) -> int | None:
        """The request's content-length; None when it is not a whole number (``-5``, ``x``)."""
        text = (self.headers.get("content-length") or "0").strip()
        return int(text) if text.isdigit() and text.isascii() else None

    def do_POST(self) -> None:
        state = self.server.state
        declared = self._declared()
        if declared is None:  # nothing after it can be read as a request: answer and close
            self.close_connection = True
            self._send(400, {"success": False, "message": "content-length must be a whole number"})
            return
        if declared > MAX_REQUEST_BYTES:  # answer without reading a body we would refuse anyway
            self.close_connection = True
            self._send(413, {"success": False, "message": "request too large"})
            return
        body = self.rfile.read(declared) if declared else b""
        url = urlsplit(self.path)
        if url.path == "/_sandbox/faults":
            try:
                spec = json.loads(body or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("faults must be a JSON object")
                self._send(200, state.set_faults(spec))
            except RecursionError:
                self._send(400, {"success": False, "message": "faults nested too deeply"})
            except ValueError as exc:
                self._send(400, {"success": False, "message": str(exc)})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = state.handle(url.path, headers, body)
        try:
            if state.latency():
                time.sleep(state.latency())
            if isinstance(answer, str):  # DROP
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status, extra, payload = answer
            self._send(status, payload, extra)
        finally:
            state.answered()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        which = url.path.removeprefix("/_sandbox/")
        if which == "faults":
            self._send(200, self.server.state.current_faults())
            return
        if which not in ("requests", "attempts"):
            self._send(404, {"success": False, "message": "unknown path"})
            return
        since = parse_qs(url.query).get("since", ["0"])[0]
        if not since.isdigit():
            self._send(400, {"success": False, "message": "since must be a whole number"})
            return
        self._send(200, self.server.state.listing(which, int(since)))

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_sandbox/requests":
            self.server.state.clear()
        elif path == "/_sandbox/faults":
            self.server.state.set_faults(asdict(Faults()))
        else:
            self._send(404, {"success": False, "message": "unknown path"})
            return
        self._send(200, {"success": True})


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server for local stand-ins (the sandbox, the test registry):
    HTTPS when given a TLS context; a client that vanishes mid-request (killed,
    timed out) or refuses the certificate is normal here, not an error to print."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, handler)
        if tls is not None:  # the handshake happens in the connection's thread, on first read
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


class _Server(QuietHTTPServer):
    def __init__(
        self, address: tuple[str, int], state: SandboxState, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(address, _Handler, tls)
        self.state = state


def server_tls(certificate: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


class Sandbox:
    """The sandbox server on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        port: int = 0,
        token: str = "sandbox-token",
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
        **limits: Any,
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS instead of HTTP."""
        self.state = SandboxState(token, **limits)
        self._tls = server_tls(*tls) if tls else None
        self._server = _Server((host, port), self.state, self._tls)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def refuse_connections(self) -> None:
        """Stop listening, so connecting is refused, and drop requests on open connections."""
        self.state.refusing = True
        self.stop()

    def accept_connections(self) -> None:
        """Listen again on the same port."""
        self._server = _Server((self.host, self.port), self.state, self._tls)
        self.state.refusing = False
        self.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
