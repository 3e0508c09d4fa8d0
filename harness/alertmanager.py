"""A private Alertmanager (Debian's binary, unpacked by tools/alertmanager.sh) that the private
Prometheus (harness/prometheus.py) sends the alerts of monitoring/rules.yml to.

`PrivateAlertmanager(directory)` runs it on a free port of 127.0.0.1 with the configuration of
monitoring/alertmanager.yml, its data under `directory`, and clustering off (its gossip would
listen on every interface). `alerts(url)` reads the alerts it holds (API v2).

Debian's build reads its notification templates from /usr/share/prometheus/alertmanager, a
path compiled in, and refuses its configuration without them: the process runs in a mount
namespace of its own (unshare) where the unpacked package's usr/share lies over the system's, an
overlay that no other process sees; nothing is written to /usr. It needs root, or unprivileged
user namespaces (then it is also given one). Debian ships no web application: --web.ui-path is
the package's own page that says so and lists the API's handlers.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from harness.process import ManagedProcess, answers_ok, free_port

__all__ = ["ALERTMANAGER", "AMTOOL", "CONFIG", "PrivateAlertmanager", "alerts"]

ROOT = Path(__file__).resolve().parent.parent
UNPACKED = ROOT / ".build" / "alertmanager"
ALERTMANAGER = UNPACKED / "usr" / "bin" / "prometheus-alertmanager"
AMTOOL = UNPACKED / "usr" / "bin" / "amtool"
CONFIG = ROOT / "monitoring" / "alertmanager.yml"
# Where Debian's build looks for its templates and its page (compiled in).
SYSTEM_SHARE = "/usr/share"
NO_UI = UNPACKED / "usr" / "share" / "prometheus" / "alertmanager" / "no-ui"

# Mounts the unpacked usr/share over the system's, in this process's own mount namespace, then
# becomes Alertmanager ("$1" the unpacked usr/share; the rest the command).
_OVERLAY = (
    f'mount -t overlay ordermesh-alertmanager -o "lowerdir=$1:{SYSTEM_SHARE}" {SYSTEM_SHARE}'
    ' && shift && exec "$@"'
)


def alerts(url: str, *, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every alert the Alertmanager at `url` holds (API v2, whatever their state: active,
    silenced or inhibited in `status.state`), each with its `labels`, `annotations` and
    `startsAt`."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=timeout_s) as answer:
        body: list[dict[str, Any]] = json.load(answer)
    return body


class PrivateAlertmanager:
    def __init__(self, directory: Path, *, port: int = 0):
        if not ALERTMANAGER.exists():
            raise FileNotFoundError(
                f"{ALERTMANAGER} not found: run `make {ALERTMANAGER.relative_to(ROOT)}`"
            )
        share = UNPACKED / "usr" / "share"
        if ":" in str(share) or "," in str(share):
            raise ValueError(f"{share}: an overlay's directory cannot hold ':' or ','")
        self.directory = directory
        self.port = port or free_port()
        namespace = ["--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            namespace = ["--user", "--map-root-user", *namespace]
        self.process = ManagedProcess(
            "alertmanager",
            [
                *("unshare", *namespace, "--", "sh", "-c", _OVERLAY, "sh", str(share)),
                str(ALERTMANAGER),
                f"--config.file={directory / CONFIG.name}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.ui-path={NO_UI}/",
                "--cluster.listen-address=",
            ],
            directory=directory,
            ready=partial(answers_ok, f"http://127.0.0.1:{self.port}/-/ready", 1.0),
            ready_timeout_s=30.0,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as Prometheus's configuration names an Alertmanager."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(CONFIG, self.directory / CONFIG.name)
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def alerts(self) -> list[dict[str, Any]]:
        return alerts(self.url)
