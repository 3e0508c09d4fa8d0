"""The containers of a compose project, through the Docker Engine API that Docker and Podman
(`podman system service`) both serve on DOCKER_HOST's unix socket: list them, crash one, pause
one. What `python -m tools.chaos --compose` acts on; only the containers labelled as the
project's (`com.docker.compose.project`), never another's.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["Container", "Engine", "EngineError"]

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class EngineError(RuntimeError):
    """The engine could not be reached, or refused what was asked."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float):
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass(frozen=True)
class Container:
    name: str
    service: str
    state: str  # running, paused, exited...
    id: str


class Engine:
    """The Engine API at `docker_host` (DOCKER_HOST, else Docker's socket), for one project."""

    def __init__(self, project: str, docker_host: str = "", timeout_s: float = 30.0):
        host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        if not host.startswith("unix://"):
            raise EngineError(f"DOCKER_HOST={host!r}: only a unix:// socket is supported")
        self.project = project
        self._socket = host.removeprefix("unix://")
        self._timeout_s = timeout_s

    def _call(self, method: str, path: str) -> Any:
        connection = _UnixConnection(self._socket, self._timeout_s)
        try:
            connection.request(method, path)
            answer = connection.getresponse()
            body = answer.read()
        except OSError as exc:
            raise EngineError(
                f"the engine at unix://{self._socket} did not answer: {exc}"
            ) from None
        finally:
            connection.close()
        if answer.status >= 300:
            raise EngineError(f"{method} {path}: {answer.status} {body.decode(errors='replace')}")
        return json.loads(body) if body else None

    def containers(self) -> list[Container]:
        """The project's containers, running or not, by name."""
        filters = json.dumps({"label": [f"{PROJECT_LABEL}={self.project}"]})
        found = self._call("GET", f"/containers/json?all=1&filters={urllib.parse.quote(filters)}")
        return sorted(
            (
                Container(
                    name=c["Names"][0].lstrip("/"),
                    service=c.get("Labels", {}).get(SERVICE_LABEL, ""),
                    state=c["State"],
                    id=c["Id"],
                )
                for c in found
            ),
            key=lambda c: c.name,
        )

    def find(self, name: str) -> Container:
        """The project's container called `name` (EngineError if there is none)."""
        known = self.containers()
        for container in known:
            if container.name == name:
                return container
        names = ", ".join(c.name for c in known) or "none: is the stack up?"
        raise EngineError(f"no container {name!r} in project {self.project!r} ({names})")

    def crash(self, name: str) -> int:
        """SIGKILL to the container's main process, as a crash would: its restart policy
        applies (a `kill` through the engine counts as stopped by hand, and it would stay
        down). Returns the process id killed."""
        container = self.find(name)
        pid = int(self._call("GET", f"/containers/{container.id}/json")["State"]["Pid"])
        if pid <= 0:
            raise EngineError(f"{name} is not running ({container.state})")
        os.kill(pid, signal.SIGKILL)
        return pid

    def pause(self, name: str) -> None:
        self._call("POST", f"/containers/{self.find(name).id}/pause")

    def unpause(self, name: str) -> None:
        self._call("POST", f"/containers/{self.find(name).id}/unpause")
