"""A private Redis server on a free port, with its own directory, and no persistence by default."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from chassis.testing.process import ManagedProcess, free_port

__all__ = ["PrivateRedis"]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


class PrivateRedis:
    def __init__(self, directory: Path, *, appendonly: bool = False):
        server = shutil.which("redis-server")
        if server is None:
            raise FileNotFoundError(
                "redis-server not found: install Redis with `apt-get install redis-server`"
            )
        self.directory = directory
        self.port = free_port()
        self.process = ManagedProcess(
            "redis",
            [
                server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "yes" if appendonly else "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            directory=directory,
            ready=lambda: _answers_ping(self.port),
            ready_timeout_s=20.0,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def remove(self) -> None:
        """Stops the server and deletes its data."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
