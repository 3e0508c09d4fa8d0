"""Wiring of the order service: `python -m services.order`."""

from __future__ import annotations

from chassis import config
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.runtime import Runtime
from services.order import api, clients, consumers, store
from services.order.config import OrderSettings
from services.order.service import Orders


async def main() -> None:
    settings = config.load(OrderSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    async with Runtime.open(settings, collections=store.COLLECTIONS) as runtime:
        inventory = await runtime.upstream(
            "inventory",
            fallback=settings.inventory_service_addr,
            timeout_s=settings.call_timeout_s,
        )
        orders = Orders(
            runtime.store,
            inventory=clients.InventoryClient(inventory, cache_s=settings.product_cache_s),
            step_timeout_s=settings.saga_step_timeout_s,
        )
        await runtime.consume(*consumers.saga_replies(orders.saga))
        runtime.background(orders.saga.watch_timeouts(runtime.store), name="saga-timeouts")
        await serve(
            settings,
            [api.service(orders)],
            readiness=runtime.readiness(),
            authenticator=await runtime.token_verifier(),
            identity=runtime.signed_identity(),
        )
