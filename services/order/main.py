"""Wiring of the order service: `python -m services.order`."""

from __future__ import annotations

from ordermesh import saga_operations
from ordermesh.defaults import Served, run_service
from ordermesh.runtime import Runtime
from ordermesh.store import StoreClock

from services.issuer import ISSUER
from services.order import api, api_v2, clients, consumers, graph, store
from services.order.config import OrderSettings
from services.order.service import Orders


async def main() -> None:
    await run_service(OrderSettings, wire, collections=store.COLLECTIONS, issuer=ISSUER)


async def wire(runtime: Runtime, settings: OrderSettings) -> Served:
    inventory = await runtime.upstream(
        "inventory",
        fallback=settings.inventory_service_addr,
        timeout_s=settings.call_timeout_s,
    )
    orders = Orders(
        runtime.store,
        inventory=clients.InventoryClient(inventory, cache_s=settings.product_cache_s),
        # Every version's events of each change, in this order, until order.v1's sunset
        # (docs/versioning.md): a consumer bound to either version hears of every change.
        events=[api_v2.Events(), api.Events()],
        step_timeout_s=settings.saga_step_timeout_s,
        compensation_sends=settings.saga_compensation_sends,
        # Step deadlines set by one instance are checked by any other, maybe on another
        # host: all of them on the store's clock.
        clock=StoreClock(runtime.store),
        saga_metrics=runtime.metrics.sagas,
    )
    await runtime.consume(*consumers.saga_replies(orders.saga))
    runtime.background(orders.saga.watch_timeouts(runtime.store), name="saga-timeouts")
    runtime.background(
        orders.saga.maintain(
            runtime.store, notes=runtime.noted, retention_s=settings.saga_retention_s
        ),
        name="saga-upkeep",
    )
    return Served(
        [
            api.service(orders),
            api_v2.service(orders),
            # The operator API of its sagas (ADMIN): list, look at, retry, resolve.
            saga_operations.service(orders.saga, runtime.store, service_name=settings.service_name),
        ],
        subgraph=graph.subgraph(orders),
    )
