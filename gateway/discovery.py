"""Envoy's endpoints from the registry: one EDS file per service, rewritten on each change.

The gateway's agent (`gateway.agent`) watches the registry (`chassis.registry.Watcher`:
pub/sub plus a periodic re-read) and writes, for every service the gateway routes to,
`<EDS_DIR>/<service>.json`: a discovery response holding the service's ClusterLoadAssignment;
and for a service with a GraphQL subgraph, `<service>-graph.json`: its instances' HTTP servers.
Envoy reloads a file when it is moved into the watched directory, so each file is written
beside it and renamed over it (never seen half-written).

- a draining instance is written with `health_status: DRAINING`: Envoy sends it no new calls;
- while Redis is unreachable the files keep the last endpoints seen (Envoy's own gRPC health
  checks and outlier detection still take dead instances out of rotation);
- at start every file is written, empty if need be, before Envoy needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chassis.logging import get_logger
from chassis.registry import Instance
from gateway.config import eds_path

__all__ = ["EdsFiles", "assignment"]

log = get_logger(__name__)


def assignment(
    cluster: str, instances: Sequence[Instance], version: int, *, graph: bool = False
) -> dict[str, Any]:
    """The EDS discovery response for one cluster: the instances' gRPC servers, or with
    `graph` their HTTP servers (their subgraphs)."""
    endpoints = []
    for i in instances:
        if graph and not i.metrics_port:
            continue
        port = i.metrics_port if graph else i.port
        endpoint = {
            "address": {"socket_address": {"address": i.host, "port_value": port}},
            "hostname": i.instance_id,
        }
        health = "DRAINING" if i.draining else "UNKNOWN"
        endpoints.append({"endpoint": endpoint, "health_status": health})
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

    def write(self, cluster: str, instances: Sequence[Instance], *, graph: bool = False) -> None:
        self._version += 1
        target = eds_path(self.directory, cluster)
        staged = target.with_name(f".{target.name}.tmp")
        staged.write_text(json.dumps(assignment(cluster, instances, self._version, graph=graph)))
        os.replace(staged, target)
        log.info(
            "endpoints",
            cluster=cluster,
            addresses=[i.address + (" (draining)" if i.draining else "") for i in instances],
        )
