"""Wiring of the auth service: `python -m services.auth`."""

from __future__ import annotations

import redis.asyncio as aioredis

from chassis import config
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.identity import AccessPolicy, SignedIdentity
from chassis.runtime import Runtime
from services import catalogue
from services.auth import api
from services.auth.config import AuthSettings
from services.auth.revocations import SESSIONS, Revocations


async def main() -> None:
    settings = config.load(AuthSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    async with Runtime.open(settings) as runtime:
        redis = (
            aioredis.from_url(settings.redis_url, socket_timeout=1.0, decode_responses=True)
            if settings.redis_url
            else None
        )
        if redis is not None:
            runtime.on_close(redis.aclose)
        revocations = Revocations(redis)
        await revocations.load()
        await runtime.consume(SESSIONS, revocations.handlers())
        # Bearer tokens only: a forwarded identity is what this service issues, never trusts.
        # The APIs behind the gateway, whose RPCs' access levels this service enforces.
        apis = [api for service in catalogue.domain_services() for api in service.apis()]
        policy = AccessPolicy(apis, await runtime.token_verifier(catalogue.ISSUER))
        authorization = api.Authorization(
            policy, SignedIdentity(settings.identity_key), revocations
        )
        await serve(
            settings,
            [api.service(authorization)],
            readiness=runtime.readiness(),
            notes=runtime.notes,
        )
