"""Wiring of the inventory service: `python -m services.inventory`."""

from __future__ import annotations

from ordermesh.defaults import Served, run_service
from ordermesh.runtime import Runtime

from services.inventory import api, consumers, graph, store
from services.inventory.config import InventorySettings
from services.inventory.service import Inventory
from services.issuer import ISSUER


async def main() -> None:
    await run_service(InventorySettings, wire, collections=store.COLLECTIONS, issuer=ISSUER)


async def wire(runtime: Runtime, settings: InventorySettings) -> Served:
    inventory = Inventory(runtime.store)
    await runtime.consume(consumers.COMMANDS, consumers.handlers(inventory))
    return Served([api.service(inventory)], subgraph=graph.subgraph(inventory))
