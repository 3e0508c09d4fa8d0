"""The gateway's agent: `python -m gateway.agent`, beside each Envoy, writing the files it reloads.

- endpoints: the registry's instances of every service the gateway routes to, as EDS files
  (`gateway.discovery`), and of each one's GraphQL subgraph;
- edge policy: the key set and the revoked sessions the auth service publishes, as ECDS files
  (`gateway.policy`).

Settings from the environment: REDIS_URL, EDS_DIR, POLICY_DIR, and JWT_ISSUER, JWT_AUDIENCE,
MAX_TOKEN_LIFETIME_S as the services have them. At start every file Envoy needs exists before
Envoy does (the files already there are kept until something newer is read); while Redis is
unreachable the files keep what they say.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from chassis import config as chassis_config
from chassis import logging as chassis_logging
from chassis.config import Settings
from chassis.registry import Instance, Registry, Watcher
from gateway.config import (
    GatewayConfig,
    clusters_of,
    eds_path,
    graph_cluster,
    graph_clusters,
    jwt_authn_config,
    policy_paths,
    revocations_config,
)
from gateway.discovery import EdsFiles
from gateway.policy import PolicyFeed, PolicyFiles, PolicyWatcher

__all__ = ["AgentSettings", "policy_files", "prepare", "run"]


class AgentSettings(Settings):
    redis_url: str
    eds_dir: Path
    policy_dir: Path
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"
    max_token_lifetime_s: int = 3600
    refresh_s: float = 1.0
    log_level: str = "INFO"


def policy_files(config: GatewayConfig) -> PolicyFiles:
    return PolicyFiles(
        policy_paths(config),
        render_jwt=lambda jwks: jwt_authn_config(config, jwks),
        render_revocations=revocations_config,
    )


def prepare(config: GatewayConfig) -> None:
    """Writes each file Envoy reads at start that does not exist yet: an empty EDS file per
    cluster, and the policy files of an empty policy (no token verifies yet)."""
    files = EdsFiles(config.eds_dir)
    for cluster in clusters_of(config) + graph_clusters():
        if not eds_path(config.eds_dir, cluster).exists():
            files.write(cluster, [])
    if config.auth:
        policy_files(config).prepare()


async def run(settings: AgentSettings) -> None:
    config = GatewayConfig(
        port=0,
        eds_dir=settings.eds_dir,
        policy_dir=settings.policy_dir,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        max_token_lifetime_s=settings.max_token_lifetime_s,
    )
    prepare(config)
    registry = Registry(settings.redis_url)
    eds = EdsFiles(settings.eds_dir)
    graphs = set(graph_clusters())

    def write(service: str, instances: Sequence[Instance]) -> None:
        eds.write(service, instances)
        if graph_cluster(service) in graphs:
            eds.write(graph_cluster(service), instances, graph=True)

    watcher = Watcher(registry, clusters_of(config), on_change=write, refresh_s=settings.refresh_s)
    redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0)
    files = policy_files(config)
    policy = PolicyWatcher(PolicyFeed(redis), files.write, refresh_s=settings.refresh_s)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await watcher.start()
    policy_task = asyncio.create_task(policy.run())
    try:
        await stopping.wait()
    finally:
        policy_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await policy_task
        await watcher.stop()
        await registry.close()
        await redis.aclose()


def main() -> None:
    settings = chassis_config.load(AgentSettings)
    chassis_logging.configure(service="gateway-agent", instance="", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
