"""A hostile Intilery: an HTTP server on loopback that answers each request with whatever
it is told, byte for byte (any status, header names and values that are not text, any
body), slowly, cut short, or not at all. The real client (httpx over aiohttp) reads it:
nothing between them is faked."""

from __future__ import annotations

import socketserver
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b'{"success":true,"eventId":"e-1"}'
    delay_s: float = 0.0  # before the answer
    cut: int | None = None  # send only this many bytes of it, then close
    reason: bytes = b"Whatever"

    def raw(self) -> bytes:
        lines = [b"HTTP/1.1 %d %s" % (self.status, self.reason)]
        names = {name.lower() for name, _ in self.headers}
        if b"content-length" not in names:
            lines.append(b"Content-Length: %d" % len(self.body))
        lines += [name + b": " + value for name, value in self.headers]
        whole = b"\r\n".join(lines) + b"\r\n\r\n" + self.body
        return whole if self.cut is None else whole[: self.cut]


@dataclass(frozen=True)
class Exchange:
    at: float  # when the request was read, Unix seconds
    request: bytes  # its head and body, as they came
    answer: Answer

    @property
    def body(self) -> bytes:
        return self.request.split(b"\r\n\r\n", 1)[1]

    def header(self, name: bytes) -> bytes | None:
        for line in self.request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class _Handler(socketserver.BaseRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        self.request.settimeout(10)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                if not (chunk := self._read()):
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            length = _content_length(head)
            while len(buffer) < length:
                if not (chunk := self._read()):
                    return
                buffer += chunk
            request = head + b"\r\n\r\n" + buffer[:length]
            buffer = buffer[length:]
            answer = self.server.next_answer()
            self.server.exchanges.append(Exchange(time.time(), request, answer))
            if answer.delay_s:
                time.sleep(answer.delay_s)
            self.request.sendall(answer.raw())
            if answer.cut is not None:
                return

    def _read(self) -> bytes:
        try:
            return bytes(self.request.recv(65536))
        except OSError:
            return b""


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class HostileServer(socketserver.ThreadingTCPServer):
    """Answers requests in turn from :meth:`answer`'s queue, then with ``default``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, default: Answer | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default or Answer()
        self.answers: deque[Answer] = deque()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def next_answer(self) -> Answer:
        with self._lock:
            return self.answers.popleft() if self.answers else self.default

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
