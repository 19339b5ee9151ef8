"""A real Redis (Debian's redis-server) on a free loopback port, for the tests of what the
bridge keeps in Redis: the shared rate limit, the ledger of commands sent once."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from bridge.devtools.kafkanode import free_port
from tests.support import wait_for


class RedisServer:
    """``durable_in``: a directory where Redis keeps an append-only file (every write synced),
    so that a restart keeps what it had; None: nothing on disk."""

    def __init__(self, durable_in: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not found: install Debian's redis-server package (.ci/run does)"
        self.binary, self.port = binary, free_port()
        self.durable_in = durable_in
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        disk = ["--save", "", "--appendonly", "no"]
        if self.durable_in is not None:
            disk = [
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.durable_in),
            ]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *disk],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 10, "redis-server to answer PING")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
