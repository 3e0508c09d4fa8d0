"""A process served by `ordermesh.grpc.serve`, as every service is, for the tests of the runtime.

Its servicer is a test double of InventoryService, whose ListProducts is public (no token);
the runtime is what is under test: health, reflection, error mapping, correlation, shutdown.
Its readiness probes a real Redis at REDIS_URL.

    REDIS_URL=redis://127.0.0.1:6379/0 SERVICE_NAME=probe python -m tests.integration.grpc_app
"""

from __future__ import annotations

import asyncio

import grpc
import redis.asyncio
from inventory.v1 import inventory_service_pb2 as pb
from inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from ordermesh import config, errors
from ordermesh import logging as chassis_logging
from ordermesh.correlation import correlation_id
from ordermesh.grpc import Service, serve
from ordermesh.health import Readiness, redis_probe
from ordermesh.logging import get_logger
from ordermesh.store import StoreUnavailable, VersionConflict

log = get_logger(__name__)


class ProbeSettings(config.ServiceSettings):
    redis_url: str


class ScriptedProducts(pb_grpc.InventoryServiceServicer):
    """Answers by the page token: "missing" -> NotFound, "crash" -> a bug, "store-down" -> the
    store unavailable, "contended" -> a transaction that lost every retry, "sleep:S" -> waits."""

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        token = request.page_token
        if token == "missing":
            raise errors.NotFound("page token 'missing' matches no page")
        if token == "crash":
            raise RuntimeError("secret internal detail")
        if token == "store-down":
            raise StoreUnavailable("secret host 10.1.2.3 refused")
        if token == "contended":
            raise VersionConflict("a concurrent transaction: secret row")
        if token.startswith("sleep:"):
            log.info("handling a slow call")  # tests wait for this line, not for a while
            await asyncio.sleep(float(token.removeprefix("sleep:")))
        # The correlation id the handler saw, so that tests can check where it came from.
        return pb.ListProductsResponse(next_page_token=correlation_id.get() or "")


def service() -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["InventoryService"],
        servicer=ScriptedProducts(),
        add_to_server=pb_grpc.add_InventoryServiceServicer_to_server,
    )


async def main() -> None:
    settings = config.load(ProbeSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        await serve(settings, [service()], readiness=Readiness({"redis": redis_probe(client)}))
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
