"""Envoy's endpoints from the registry: one EDS file per service, rewritten on each change.

The gateway's agent (`ordermesh.gateway.agent`) watches the registry (`ordermesh.registry.Watcher`:
pub/sub plus a periodic re-read) and writes, for every service the gateway routes to,
`<EDS_DIR>/<service>.json`: a discovery response holding the service's ClusterLoadAssignment;
and for a service with a GraphQL subgraph, `<service>-graph.json`: its instances' HTTP servers
(and the same for a service with web pages, the console: `<service>-web.json`).
Envoy reloads a file when it is moved into the watched directory, so each file is written
beside it and renamed over it (never seen half-written).

- a draining instance is written with `health_status: DRAINING`: Envoy sends it no new calls;
- while Redis is unreachable the files keep the last endpoints seen (Envoy's own gRPC health
  checks and outlier detection still take dead instances out of rotation);
- at start every file is written, empty if need be, before Envoy needs it;
- an instance whose address Envoy cannot take (a host name rather than an IP address, a port
  out of range) is left out and logged: Envoy refuses a whole EDS update for one such endpoint,
  and the cluster would stop following the registry (its last accepted endpoints kept).

Left out rather than resolved: a registry entry says where one instance is, and every target
advertises an address (Kubernetes the pod IP, compose the address the container's host name
resolves to at start, `make up` 127.0.0.1: ordermesh.registration.advertised_host), so a name
there is a misconfiguration (e.g. GRPC_HOST=localhost). Resolving it here would be wrong as
often as right: a compose service name resolves to every replica (the instance's id and draining
state then written on other instances' addresses), an address resolved once goes stale (a file
is rewritten only when the registry changes), and a lookup stalls every cluster's update while a
resolver does not answer. Names are Envoy's to resolve (STRICT_DNS clusters), not EDS's."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ordermesh.gateway.envoy.config import eds_path
from ordermesh.logging import get_logger
from ordermesh.registry import Instance

__all__ = ["EdsFiles", "assignment", "reachable"]

log = get_logger(__name__)


def reachable(instances: Sequence[Instance], *, http: bool = False) -> list[Instance]:
    """The instances Envoy can be given: with an IP address (and, with `http`, the port of their
    HTTP server, beside /metrics, in range); each other one is logged, naming its address."""
    kept = []
    for i in instances:
        port = i.metrics_port if http else i.port
        if http and not port:
            continue  # it serves no HTTP
        if _ip(i.host) is None or not 0 < port < 65536:
            log.warning(
                "instance left out of the gateway: its address is not an IP address and port",
                service=i.service,
                instance=i.instance_id,
                address=f"{i.host}:{port}",
                fix="advertise an IP address (ADVERTISED_HOST)",
            )
            continue
        kept.append(i)
    return kept


def _ip(host: str) -> str | None:
    """The host as EDS takes it: an IP address (IPv6 without the brackets of `[::1]:port`);
    None for anything else (a host name)."""
    try:
        return str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")))
    except ValueError:
        return None


def assignment(
    cluster: str, instances: Sequence[Instance], version: int, *, http: bool = False
) -> dict[str, Any]:
    """The EDS discovery response for one cluster: the instances' gRPC servers, or with
    `http` their HTTP servers (their subgraphs, their web pages); only those `reachable`
    keeps."""
    endpoints = []
    for i in reachable(instances, http=http):
        port = i.metrics_port if http else i.port
        endpoint = {
            "address": {"socket_address": {"address": _ip(i.host), "port_value": port}},
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

    def write(
        self, cluster: str, instances: Sequence[Instance], *, http: bool = False
    ) -> list[str]:
        """Writes `cluster`'s file; the endpoints it holds (those Envoy can reach)."""
        self._version += 1
        target = eds_path(self.directory, cluster)
        staged = target.with_name(f".{target.name}.tmp")
        response = assignment(cluster, instances, self._version, http=http)
        staged.write_text(json.dumps(response))
        os.replace(staged, target)
        addresses = _addresses(response)
        log.info("endpoints", cluster=cluster, addresses=addresses)
        return addresses


def _addresses(response: dict[str, Any]) -> list[str]:
    """The endpoints of a discovery response, as `host:port`, `(draining)` after those that are."""
    shown = []
    for resource in response["resources"]:
        for locality in resource["endpoints"]:
            for lb in locality["lb_endpoints"]:
                socket = lb["endpoint"]["address"]["socket_address"]
                host = f"[{socket['address']}]" if ":" in socket["address"] else socket["address"]
                draining = " (draining)" if lb["health_status"] == "DRAINING" else ""
                shown.append(f"{host}:{socket['port_value']}{draining}")
    return shown
