"""Wiring of the auth service: `python -m services.auth`."""

from __future__ import annotations

import redis.asyncio as aioredis

from chassis import config, telemetry
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.identity import AccessPolicy
from chassis.policy import PolicyFeed, signing_key
from chassis.runtime import Runtime
from chassis.tokens import grpc_jwks_source
from services import catalogue
from services.auth import api, consumers
from services.auth.config import AuthSettings
from services.auth.service import EdgePolicyKeeper
from services.auth.store import COLLECTIONS


async def main() -> None:
    settings = config.load(AuthSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    telemetry.configure(service=settings.service_name, instance=settings.instance_id)
    async with Runtime.open(settings, collections=COLLECTIONS) as runtime:
        redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0)
        runtime.on_close(redis.aclose)
        issuer = await runtime.upstream(
            catalogue.ISSUER.service, fallback=settings.user_service_addr
        )
        policy = EdgePolicyKeeper(
            runtime.store,
            PolicyFeed(redis),
            grpc_jwks_source(catalogue.ISSUER, issuer),
            signing_key(settings.edge_policy_signing_key),
            keys_refresh_s=settings.keys_refresh_s,
        )
        runtime.background(policy.keep_publishing(), name="publish policy")
        await runtime.consume(consumers.SESSIONS, consumers.handlers(policy))
        # The APIs behind the gateway, whose RPCs' access levels the per-call check enforces;
        # the verifier refuses revoked sessions too (it follows the published policy).
        apis = [api for service in catalogue.domain_services() for api in service.apis()]
        access = AccessPolicy(apis, await runtime.token_verifier(catalogue.ISSUER))
        await serve(
            settings,
            [api.service(api.Authorization(access))],
            readiness=runtime.readiness(),
            notes=runtime.notes,
            metrics=runtime.metrics,
        )
