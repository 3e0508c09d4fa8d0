"""Wiring of the order service: `python -m services.order`."""

from __future__ import annotations

import asyncio
import time

from chassis import config, telemetry
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.logging import get_logger
from chassis.runtime import Runtime
from chassis.store import Store, StoreClock, StoreError
from services import catalogue
from services.order import api, api_v2, clients, consumers, graph, store
from services.order.config import OrderSettings
from services.order.service import Orders

log = get_logger(__name__)
PARKED_COUNT_INTERVAL_S = 5.0
SAGA_PRUNE_INTERVAL_S = 3600.0


async def main() -> None:
    settings = config.load(OrderSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    telemetry.configure(service=settings.service_name, instance=settings.instance_id)
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
            compensation_sends=settings.saga_compensation_sends,
            # Step deadlines set by one instance are checked by any other, maybe on another
            # host: all of them on the store's clock.
            clock=StoreClock(runtime.store),
            saga_metrics=runtime.metrics.sagas,
        )
        await runtime.consume(*consumers.saga_replies(orders.saga))
        runtime.background(orders.saga.watch_timeouts(runtime.store), name="saga-timeouts")
        runtime.background(count_parked(orders, runtime.store, runtime.noted), name="saga-parked")
        runtime.background(
            prune_sagas(orders, runtime.store, settings.saga_retention_s), name="saga-pruning"
        )
        await serve(
            settings,
            [api.service(orders), api_v2.service(orders)],
            readiness=runtime.readiness(),
            authenticator=await runtime.token_verifier(catalogue.ISSUER),
            notes=runtime.notes,
            metrics=runtime.metrics,
            subgraph=graph.subgraph(orders),
        )


async def count_parked(orders: Orders, store: Store, notes: dict[str, str]) -> None:
    """Keeps `notes` telling how many sagas need an operator, for `make status`."""
    while True:
        try:
            parked = await orders.saga.count_needing_operator(store)
        except StoreError:
            log.warning("could not count the sagas needing an operator")
        else:
            notes.pop("sagas_needing_operator", None)
            if parked:
                notes["sagas_needing_operator"] = str(parked)
        await asyncio.sleep(PARKED_COUNT_INTERVAL_S)


async def prune_sagas(orders: Orders, store: Store, retention_s: float) -> None:
    """Deletes compensated sagas older than `retention_s`, hourly."""
    while True:
        try:
            while await orders.saga.prune_ended(store, before=time.time() - retention_s):
                pass
        except StoreError:
            log.warning("could not prune ended sagas now")
        await asyncio.sleep(SAGA_PRUNE_INTERVAL_S)
