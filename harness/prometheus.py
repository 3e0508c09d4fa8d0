"""A private Prometheus (Debian's binary, unpacked by tools/prometheus.sh) scraping the system.

`PrivatePrometheus(directory, redis_url=...)` starts `python -m ordermesh.targets` (the file of
targets, from the registry) and Prometheus on a free port of 127.0.0.1, with the configuration
of `ordermesh.deploy.prometheus` and the rules of monitoring/rules.yml, its data under `directory`,
sending its alerts to the Alertmanager given (`alertmanager="host:port"`, harness/alertmanager.py).

Debian's build serves its web pages from files that it reads at run time from the system's
/usr/share/prometheus/web (--web.local-assets; without them each page answers 500, "error
reading base template"): it is given those of the unpacked package (tools/prometheus.sh unpacks
the JavaScript packages they link to beside it), and the console directories likewise. Its UI
is Prometheus's classic one only (Debian leaves out the React UI): `/` and `/graph` lead to
/classic/graph, and the pages are under /classic/ (PAGES); /alerts and /targets answer 404.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ordermesh.deploy import prometheus

from harness.process import ManagedProcess, answers_ok, free_port

__all__ = ["PAGES", "PROMETHEUS", "PrivatePrometheus", "api"]

ROOT = Path(__file__).resolve().parent.parent
UNPACKED = ROOT / ".build" / "prometheus"
# The example's rules (monitoring/, beside compose's Prometheus configuration).
RULES = ROOT / "monitoring" / prometheus.RULES
PROMETHEUS = UNPACKED / "usr" / "bin" / "prometheus"
# Its web pages (Debian's build: the classic UI), by what they show.
PAGES = {
    "graph": "/classic/graph",
    "alerts": "/classic/alerts",
    "targets": "/classic/targets",
    "rules": "/classic/rules",
}


def api(url: str, path: str, params: Mapping[str, str], *, timeout_s: float = 10.0) -> Any:
    """The `data` of an answer of the HTTP API of the Prometheus at `url` (`/api/v1/<path>`)."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=timeout_s) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {path} {params}: {body}")
    return body["data"]


class PrivatePrometheus:
    def __init__(
        self,
        directory: Path,
        *,
        redis_url: str,
        gateway_admin: str = "",
        gateway_agent: str = "",
        alertmanager: str = "",
        scrape_interval_s: float = 1.0,
        lost_kept_s: float = 300.0,
        port: int = 0,
    ):
        if not PROMETHEUS.exists():
            raise FileNotFoundError(
                f"{PROMETHEUS} not found: run `make {PROMETHEUS.relative_to(ROOT)}`"
            )
        self.directory = directory
        self.port = port or free_port()
        self.targets_file = directory / prometheus.TARGETS
        self.targets = ManagedProcess(
            "prometheus-targets",
            [sys.executable, "-m", "ordermesh.targets"],
            directory=directory,
            env={
                "REDIS_URL": redis_url,
                "TARGETS_FILE": str(self.targets_file),
                "GATEWAY_ADMIN": gateway_admin,
                "GATEWAY_AGENT": gateway_agent,
                "LOST_KEPT_S": str(lost_kept_s),
            },
            ready=self.targets_file.exists,
            ready_timeout_s=30.0,
        )
        self._config = prometheus.config(
            scrape_interval_s=scrape_interval_s,
            alertmanagers=[alertmanager] if alertmanager else [],
        )
        self.process = ManagedProcess(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                f"--web.local-assets={UNPACKED / 'usr' / 'share' / 'prometheus' / 'web'}/",
                f"--web.console.templates={UNPACKED / 'etc' / 'prometheus' / 'consoles'}",
                f"--web.console.libraries={UNPACKED / 'etc' / 'prometheus' / 'console_libraries'}",
            ],
            directory=directory,
            ready=partial(answers_ok, f"http://127.0.0.1:{self.port}/-/ready", 1.0),
            ready_timeout_s=30.0,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "prometheus.yml").write_text(prometheus.render(self._config))
        shutil.copy(RULES, self.directory / prometheus.RULES)
        self.targets.start()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
        self.targets.stop()

    def api(self, path: str, **params: str) -> Any:
        return api(self.url, path, params)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to: each series' labels and value."""
        return [
            {"labels": r["metric"], "value": float(r["value"][1])}
            for r in self.api("query", query=expr)["result"]
        ]

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[dict[str, Any]]], bool] = bool,
        *,
        timeout_s: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Queries `expr` until `condition(result)` holds; TimeoutError with the last result."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if condition(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr}: {result} after {timeout_s} s")
            time.sleep(0.5)
