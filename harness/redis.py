"""A private Redis server on a free port, with its own directory, and no persistence by default.

It takes no command from a client that does not know its password (`requirepass`, generated
for each server, in a config file only its owner may read; never on the command line, where
any local user could read it): another process on the host cannot register a fake instance.
"""

from __future__ import annotations

import secrets
import shutil
import socket
from pathlib import Path

from deploy.private import private_file
from harness.process import ManagedProcess, free_port

__all__ = ["PrivateRedis"]


def _answers_ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            answer = b""
            while len(answer) < 12 and (chunk := sock.recv(12 - len(answer))):
                answer += chunk
            return answer == b"+OK\r\n+PONG\r\n"
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
        self.password = secrets.token_urlsafe(24)
        config = private_file(
            directory / "redis.conf",
            f'bind 127.0.0.1\nport {self.port}\ndir {directory}\nsave ""\n'
            f'appendonly {"yes" if appendonly else "no"}\ndaemonize no\nlogfile ""\n'
            f"requirepass {self.password}\n",
        )
        self.process = ManagedProcess(
            "redis",
            [server, str(config)],
            directory=directory,
            ready=lambda: _answers_ping(self.port, self.password),
            ready_timeout_s=20.0,
        )

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

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
