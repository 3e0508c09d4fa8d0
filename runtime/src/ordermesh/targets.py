"""Prometheus's targets from the registry: `python -m ordermesh.targets`.

Writes the file of Prometheus's file-based service discovery (`file_sd_configs`): every
registered instance of every service in the catalogue that serves metrics, at
`<host>:<metrics_port>`, labelled `service`, `instance_id` and `version`. The file is rewritten
(whole, by a rename) when the registry changes, so that instances that come and go appear in
Prometheus's targets, and leave them, within about a second.

An instance that leaves without draining (killed, hung, cut off: its lease ran out) stays a
target for `LOST_KEPT_S` more, labelled `lost="true"`: Prometheus then sees it down (`up == 0`),
which is what the InstanceMissing alert is made of. One that drained and deregistered leaves at
once. While Redis is unreachable the file keeps what it says.

With GATEWAY_ADMIN (host:port of Envoy's admin listener) the gateway is a target too, at
`/stats/prometheus`, labelled `service="gateway"`; with GATEWAY_AGENT (host:port of the
gateway's agent) so is its agent, at `/metrics` (the edge policy it holds), labelled
`service="gateway-agent"`.

Settings from the environment: REDIS_URL, TARGETS_FILE, GATEWAY_ADMIN, GATEWAY_AGENT,
LOST_KEPT_S (default 300), CATALOGUE (the project's catalogue, module:attribute, by default
services.catalogue:CATALOGUE).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ordermesh import config as runtime_config
from ordermesh import logging as runtime_logging
from ordermesh.catalogue import load
from ordermesh.registry import Instance, Registry, Watcher
from ordermesh.roles import CatalogueReaderSettings
from ordermesh.watch import follow

__all__ = ["Targets", "TargetsSettings", "run"]


class TargetsSettings(CatalogueReaderSettings):
    redis_url: str
    targets_file: Path
    gateway_admin: str = ""
    gateway_agent: str = ""
    lost_kept_s: float = 300.0
    refresh_s: float = 1.0
    log_level: str = "INFO"


class Targets:
    """The instances Prometheus scrapes, kept from the registry's changes and written to `path`."""

    def __init__(
        self,
        path: Path,
        *,
        lost_kept_s: float,
        gateway_admin: str = "",
        gateway_agent: str = "",
        clock: Callable[[], float] = time.monotonic,
    ):
        self._path = path
        self._gateway: list[dict[str, Any]] = []
        if gateway_admin:
            self._gateway.append(
                {
                    "targets": [gateway_admin],
                    "labels": {"service": "gateway", "__metrics_path__": "/stats/prometheus"},
                }
            )
        if gateway_agent:
            self._gateway.append(
                {
                    "targets": [gateway_agent],
                    "labels": {"service": "gateway-agent", "instance_id": gateway_agent},
                }
            )
        self._lost_kept_s = lost_kept_s
        self._clock = clock
        self._live: dict[str, list[Instance]] = {}
        # Instances gone without draining, by instance id: (instance, until when it is kept).
        self._lost: dict[str, tuple[Instance, float]] = {}
        self._written = ""

    def update(self, service: str, instances: Sequence[Instance]) -> None:
        """What the registry now lists for `service` (a Watcher's `on_change`)."""
        now = self._clock()
        ids = {i.instance_id for i in instances}
        for gone in self._live.get(service, []):
            if gone.instance_id not in ids and not gone.draining:
                self._lost[gone.instance_id] = (gone, now + self._lost_kept_s)
        for instance_id in ids:
            self._lost.pop(instance_id, None)
        self._live[service] = list(instances)
        self.write()

    def write(self) -> None:
        now = self._clock()
        self._lost = {k: v for k, v in self._lost.items() if v[1] > now}
        groups: list[dict[str, Any]] = [
            _group(instance, lost=False)
            for instances in self._live.values()
            for instance in instances
            if instance.metrics_port
        ]
        groups += [_group(instance, lost=True) for instance, _ in self._lost.values()]
        groups.sort(key=lambda g: (g["labels"]["service"], g["labels"]["instance_id"]))
        groups += self._gateway
        text = json.dumps(groups, indent=1) + "\n"
        if text == self._written:
            return  # Prometheus re-reads the file on every change of it
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_suffix(".partial")
        partial.write_text(text)
        os.replace(partial, self._path)
        self._written = text


def _group(instance: Instance, *, lost: bool) -> dict[str, Any]:
    labels = {
        "service": instance.service,
        "instance_id": instance.instance_id,
        "version": instance.version,
    }
    if lost:
        labels["lost"] = "true"
    return {"targets": [f"{instance.host}:{instance.metrics_port}"], "labels": labels}


async def run(settings: TargetsSettings) -> None:
    targets = Targets(
        settings.targets_file,
        lost_kept_s=settings.lost_kept_s,
        gateway_admin=settings.gateway_admin,
        gateway_agent=settings.gateway_agent,
    )
    if not settings.targets_file.exists():
        targets.write()  # Prometheus starts with an empty list rather than a missing file
    registry = Registry(settings.redis_url)
    watcher = Watcher(
        registry,
        [s.name for s in load(settings.catalogue)],
        on_change=targets.update,
        refresh_s=settings.refresh_s,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await watcher.start()

    async def expire() -> None:
        targets.write()

    # Lost instances leave when their time is up, whether the registry changed or not.
    expiring = asyncio.create_task(
        follow(
            expire,
            refresh_s=settings.refresh_s,
            wait_first=True,
            name="targets-expiry",
            failed="targets not written; trying again",
        )
    )
    try:
        await stopping.wait()
    finally:
        expiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiring
        await watcher.stop()
        await registry.close()


def main() -> None:
    settings = runtime_config.load(TargetsSettings)
    runtime_logging.configure(service="prometheus-targets", instance="", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
