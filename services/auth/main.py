"""Wiring of the auth service: `python -m services.auth`."""

from __future__ import annotations

import redis.asyncio as aioredis
from ordermesh.identity import AccessPolicy
from ordermesh.policy import PolicyFeed, signing_key
from ordermesh.runtime import Runtime
from ordermesh.tokens import grpc_jwks_source

from services import catalogue
from services.auth import api, consumers
from services.auth.config import AuthSettings
from services.auth.service import EdgePolicyKeeper
from services.auth.store import COLLECTIONS
from services.defaults import Served, run_service
from services.issuer import ISSUER


async def main() -> None:
    await run_service(AuthSettings, wire, collections=COLLECTIONS)


async def wire(runtime: Runtime, settings: AuthSettings) -> Served:
    redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0)
    runtime.on_close(redis.aclose)
    issuer = await runtime.upstream(ISSUER.service, fallback=settings.user_service_addr)
    policy = EdgePolicyKeeper(
        runtime.store,
        PolicyFeed(redis),
        grpc_jwks_source(ISSUER, issuer),
        signing_key(settings.edge_policy_signing_key),
        keys_refresh_s=settings.keys_refresh_s,
    )
    runtime.background(policy.keep_publishing(), name="publish policy")
    await runtime.consume(consumers.SESSIONS, consumers.handlers(policy))
    # The APIs behind the gateway, whose RPCs' access levels the per-call check enforces;
    # the verifier refuses revoked sessions too (it follows the published policy).
    apis = [found for service in catalogue.CATALOGUE.domain_services() for found in service.apis()]
    verifier = await runtime.token_verifier(ISSUER)
    # Envoy's Authorization is open to its caller (the gateway), like health: the verifier
    # given to serve checks no RPC of it; it is handed on so that no second one is made.
    authorization = api.Authorization(AccessPolicy(apis, verifier))
    return Served([api.service(authorization)], authenticator=verifier)
