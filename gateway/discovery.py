"""Envoy's endpoints from the registry: one EDS file per service, rewritten on each change.

`python -m gateway.discovery` (settings from the environment: REDIS_URL, EDS_DIR) watches the
registry (`chassis.registry.Watcher`: pub/sub plus a periodic re-read) and writes, for every
service the gateway routes to, `<EDS_DIR>/<service>.json`: a discovery response holding the
service's ClusterLoadAssignment. Envoy reloads a file when it is moved into the watched
directory, so each file is written beside it and renamed over it (never seen half-written).

- a draining instance is written with `health_status: DRAINING`: Envoy sends it no new calls;
- while Redis is unreachable the files keep the last endpoints seen (Envoy's own gRPC health
  checks and outlier detection still take dead instances out of rotation);
- at start every file is written, empty if need be, before Envoy needs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chassis import config as chassis_config
from chassis import logging as chassis_logging
from chassis.config import Settings
from chassis.logging import get_logger
from chassis.registry import Instance, Registry, Watcher
from gateway.config import GatewayConfig, clusters_of, eds_path

__all__ = ["EdsFiles", "assignment"]

log = get_logger(__name__)


def assignment(cluster: str, instances: Sequence[Instance], version: int) -> dict[str, Any]:
    """The EDS discovery response for one cluster."""
    endpoints = [
        {
            "endpoint": {
                "address": {"socket_address": {"address": i.host, "port_value": i.port}},
                "hostname": i.instance_id,
            },
            "health_status": "DRAINING" if i.draining else "UNKNOWN",
        }
        for i in instances
    ]
    return {
        "version_info": str(version),
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": cluster,
                "endpoints": [{"lb_endpoints": endpoints}] if endpoints else [],
            }
        ],
    }


class EdsFiles:
    """The EDS files of a directory, each replaced atomically."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._version = 0
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, cluster: str, instances: Sequence[Instance]) -> None:
        self._version += 1
        target = eds_path(self.directory, cluster)
        staged = target.with_name(f".{target.name}.tmp")
        staged.write_text(json.dumps(assignment(cluster, instances, self._version)))
        os.replace(staged, target)
        log.info(
            "endpoints",
            cluster=cluster,
            addresses=[i.address + (" (draining)" if i.draining else "") for i in instances],
        )


class DiscoverySettings(Settings):
    redis_url: str
    eds_dir: Path
    refresh_s: float = 1.0
    log_level: str = "INFO"


async def run(settings: DiscoverySettings) -> None:
    clusters = clusters_of(GatewayConfig(port=0, eds_dir=settings.eds_dir))
    files = EdsFiles(settings.eds_dir)
    for cluster in clusters:
        files.write(cluster, [])
    registry = Registry(settings.redis_url)
    watcher = Watcher(registry, clusters, on_change=files.write, refresh_s=settings.refresh_s)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await watcher.start()
    try:
        await stopping.wait()
    finally:
        await watcher.stop()
        await registry.close()


def main() -> None:
    settings = chassis_config.load(DiscoverySettings)
    chassis_logging.configure(service="discovery", instance="", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
