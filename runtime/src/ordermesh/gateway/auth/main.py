"""Wiring of the auth service: `python -m ordermesh.gateway.auth`.

It reads the project's catalogue (CATALOGUE, `module:attribute`: ordermesh.catalogue.load) for
its token issuer and the APIs behind the gateway, whose access levels its per-call check
enforces.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ordermesh import config
from ordermesh.catalogue import load
from ordermesh.defaults import Served, run_service
from ordermesh.gateway.auth import api, consumers
from ordermesh.gateway.auth.config import AuthSettings
from ordermesh.gateway.auth.service import EdgePolicyKeeper
from ordermesh.gateway.auth.store import COLLECTIONS
from ordermesh.identity import AccessPolicy
from ordermesh.policy import PolicyFeed, signing_key
from ordermesh.runtime import Runtime
from ordermesh.tokens import grpc_jwks_source

__all__ = ["main", "wire"]


async def main() -> None:
    await run_service(AuthSettings, wire, collections=COLLECTIONS)


async def wire(runtime: Runtime, settings: AuthSettings) -> Served:
    catalogue = load(settings.catalogue)
    issuer = catalogue.issuer
    redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0)
    runtime.on_close(redis.aclose)
    upstream = await runtime.upstream(issuer.service, fallback=config.address_of(issuer.service))
    policy = EdgePolicyKeeper(
        runtime.store,
        PolicyFeed(redis),
        grpc_jwks_source(issuer, upstream),
        signing_key(settings.edge_policy_signing_key),
        keys_refresh_s=settings.keys_refresh_s,
    )
    runtime.background(policy.keep_publishing(), name="publish policy")
    if issuer.revocations:
        await runtime.consume(consumers.sessions(issuer), consumers.handlers(issuer, policy))
    # The APIs behind the gateway, whose RPCs' access levels the per-call check enforces;
    # the verifier refuses revoked sessions too (it follows the published policy).
    apis = [found for service in catalogue.domain_services() for found in service.apis()]
    verifier = await runtime.token_verifier(issuer)
    # Envoy's Authorization is open to its caller (the gateway), like health: the verifier
    # given to serve checks no RPC of it; it is handed on so that no second one is made.
    authorization = api.Authorization(AccessPolicy(apis, verifier))
    return Served([api.service(authorization)], authenticator=verifier)
