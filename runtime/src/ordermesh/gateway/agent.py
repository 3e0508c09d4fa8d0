"""The gateway's agent: `python -m ordermesh.gateway.agent`, beside each Envoy, writing the files it
reloads.

- endpoints: the registry's instances of every service the gateway routes to, as EDS files
  (`ordermesh.gateway.discovery`), and of each one's GraphQL subgraph;
- edge policy: the key set and the revoked sessions the auth service publishes, verified
  against EDGE_POLICY_VERIFY_KEY (ordermesh.policy), as ECDS files (`ordermesh.gateway.policy`);
- the subgraph listener's check of its callers (INTERNAL_TOKEN, `ordermesh.gateway.envoy`), an
  ECDS file too, so that the secret is in no committed configuration;
- with FAULT_FLAGS_FILE set, the gateway's fault switches (`gateway-latency`, `gateway-aborts`,
  ordermesh.switches) as the configuration of Envoy's fault filters
  (ordermesh.gateway.envoy.faults), each rewritten when the flag file changes; without it both
  filters pass every call.

Settings from the environment: REDIS_URL, EDS_DIR, POLICY_DIR, EDGE_POLICY_VERIFY_KEY,
INTERNAL_TOKEN, FAULT_FLAGS_FILE (development and tests only; refused with
FAULT_SWITCHES_FORBIDDEN, as the production overlay sets), and
JWT_ISSUER, JWT_AUDIENCE, MAX_TOKEN_LIFETIME_S as the services have them; PORT, where it serves
`/ready` and `/metrics` on HOST (127.0.0.1); CATALOGUE, the project's catalogue
(module:attribute, by default services.catalogue:CATALOGUE) and DESCRIPTOR_SET, its contracts
(by default gen/descriptors.pb under the working directory). At start every file Envoy needs
exists before Envoy does (the files already there are kept until something newer is read);
while Redis is unreachable the files keep what they say.

`/ready` answers 200 once the agent has written a verified policy and, for every service the
gateway routes to, instances read from the registry (503 before: a gateway holding a
placeholder key and no endpoints would refuse every call); it stays ready after, when Redis or
a service goes away, since the files still hold what was last known (the policy's age says how
stale: `ordermesh_edge_policy_age_seconds`).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import Field

from ordermesh import config as runtime_config
from ordermesh import logging as runtime_logging
from ordermesh.catalogue import load
from ordermesh.config import FaultSwitchSettings
from ordermesh.gateway.discovery import EdsFiles
from ordermesh.gateway.envoy.clusters import clusters_of
from ordermesh.gateway.envoy.config import GatewayConfig, eds_path, policy_paths
from ordermesh.gateway.envoy.ecds import internal_hop_config, jwt_authn_config, revocations_config
from ordermesh.gateway.envoy.faults import fault_config, fault_paths
from ordermesh.gateway.envoy.names import graph_cluster, graph_clusters, web_cluster, web_clusters
from ordermesh.gateway.policy import PolicyFiles, write_filter_config
from ordermesh.logging import get_logger
from ordermesh.policy import PolicyFeed, PolicyFollower, export_metrics, verify_key
from ordermesh.registry import Instance, Registry, Watcher
from ordermesh.roles import CatalogueReaderSettings
from ordermesh.switches import Switches

__all__ = ["AgentSettings", "policy_files", "prepare", "run", "write_faults"]

log = get_logger(__name__)


class AgentSettings(FaultSwitchSettings, CatalogueReaderSettings):
    redis_url: str
    eds_dir: Path
    policy_dir: Path
    # The auth service's public policy key (ordermesh.policy): a policy it does not verify is
    # never written.
    edge_policy_verify_key: str
    # The secret of the system's internal hops (ordermesh.gateway.envoy, INTERNAL_HEADER).
    internal_token: str = Field(min_length=16)
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"
    max_token_lifetime_s: int = 3600
    refresh_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "INFO"
    # The project's contracts' descriptor set, as the project lays them out (its catalogue:
    # CatalogueReaderSettings).
    descriptor_set: Path = Path("gen/descriptors.pb")


def policy_files(config: GatewayConfig) -> PolicyFiles:
    return PolicyFiles(
        policy_paths(config),
        render_jwt=lambda jwks: jwt_authn_config(config, jwks),
        render_revocations=revocations_config,
    )


def prepare(config: GatewayConfig) -> None:
    """Writes each file Envoy reads at start that does not exist yet: an empty EDS file per
    cluster, the policy files of an empty policy (no token verifies yet), and a subgraph
    listener's check that refuses every caller (no secret known yet)."""
    files = EdsFiles(config.eds_dir)
    for cluster in (
        clusters_of(config) + graph_clusters(config.catalogue) + web_clusters(config.catalogue)
    ):
        if not eds_path(config.eds_dir, cluster).exists():
            files.write(cluster, [])
    if config.auth:
        policy_files(config).prepare()
    internal = policy_paths(config)["internal"]
    if not internal.exists():
        internal.parent.mkdir(parents=True, exist_ok=True)
        write_filter_config(internal, internal_hop_config(""))
    for switch, path in fault_paths(config).items():
        if not path.exists():
            write_filter_config(path, fault_config(switch))


def write_faults(config: GatewayConfig, switches: Switches) -> None:
    """Each gateway switch's filter as the flag file now says; one whose rule the gateway
    cannot apply is written off, and logged."""
    for switch, path in fault_paths(config).items():
        rule = switches.rule(switch)
        try:
            fault = fault_config(switch, *rule) if rule is not None else fault_config(switch)
        except ValueError as exc:
            log.error("fault switch off at the gateway", switch=switch, error=str(exc))
            fault = fault_config(switch)
        write_filter_config(path, fault)


async def run(settings: AgentSettings) -> None:
    key = verify_key(settings.edge_policy_verify_key)
    config = GatewayConfig(
        port=0,
        eds_dir=settings.eds_dir,
        catalogue=load(settings.catalogue),
        descriptor_set=settings.descriptor_set,
        policy_dir=settings.policy_dir,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        max_token_lifetime_s=settings.max_token_lifetime_s,
    )
    prepare(config)
    write_filter_config(
        policy_paths(config)["internal"], internal_hop_config(settings.internal_token)
    )
    registry = Registry(settings.redis_url)
    eds = EdsFiles(settings.eds_dir)
    graphs = set(graph_clusters(config.catalogue))
    clusters = clusters_of(config)
    # Services with web pages alone (the console) are watched for their HTTP servers only, and
    # the gateway is ready without them: they serve people, not the system's calls.
    webs = [service.name for service in config.catalogue.web_services()]
    found: set[str] = set()  # the clusters that had instances at some read

    def write(service: str, instances: Sequence[Instance]) -> None:
        if service in clusters and eds.write(service, instances):  # endpoints Envoy can reach
            found.add(service)
        if graph_cluster(service) in graphs:
            eds.write(graph_cluster(service), instances, http=True)
        if service in webs:
            eds.write(web_cluster(service), instances, http=True)

    watched = sorted({*clusters, *webs})
    watcher = Watcher(registry, watched, on_change=write, refresh_s=settings.refresh_s)
    redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0)
    files = policy_files(config)
    policy = PolicyFollower(PolicyFeed(redis), key, files.write, refresh_s=settings.refresh_s)
    switches = Switches(
        settings.fault_flags_file, on_change=lambda switches: write_faults(config, switches)
    )
    metrics = CollectorRegistry()
    export_metrics(policy, metrics)

    def ready() -> bool:
        return policy.held is not None and found.issuperset(clusters)

    server = await _serve(settings, ready, metrics)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await watcher.start()
    tasks = [asyncio.create_task(policy.run()), asyncio.create_task(switches.follow())]
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await watcher.stop()
        await registry.close()
        await redis.aclose()
        await server.cleanup()


async def _serve(
    settings: AgentSettings, ready: Callable[[], bool], metrics: CollectorRegistry
) -> web.AppRunner:
    async def readiness(_: web.Request) -> web.Response:
        return (
            web.Response(text="ready\n")
            if ready()
            else web.Response(status=503, text="no verified policy or no endpoints yet\n")
        )

    async def scrape(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/ready", readiness)
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    return runner


def main() -> None:
    settings = runtime_config.load(AgentSettings)
    runtime_logging.configure(service="gateway-agent", instance="", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
