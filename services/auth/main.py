"""Wiring of the auth service: `python -m services.auth`."""

from __future__ import annotations

import redis.asyncio as aioredis
from inventory.v1 import inventory_service_pb2
from notification.v1 import notification_service_pb2
from order.v1 import order_service_pb2
from user.v1 import user_service_pb2

from chassis import config
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.identity import AccessPolicy, SignedIdentity
from chassis.runtime import Runtime
from services.auth import api
from services.auth.config import AuthSettings
from services.auth.revocations import SESSIONS, Revocations

# The services behind the gateway, whose RPCs' access levels this service enforces.
GATEWAY_SERVICES = [
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    inventory_service_pb2.DESCRIPTOR.services_by_name["InventoryService"],
    order_service_pb2.DESCRIPTOR.services_by_name["OrderService"],
    notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"],
]


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
        policy = AccessPolicy(GATEWAY_SERVICES, await runtime.token_verifier())
        authorization = api.Authorization(
            policy, SignedIdentity(settings.identity_key), revocations
        )
        await serve(settings, [api.service(authorization)], readiness=runtime.readiness())
