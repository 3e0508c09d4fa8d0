"""Wiring of the inventory service: `python -m services.inventory`."""

from __future__ import annotations

from chassis import config, telemetry
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.runtime import Runtime
from services import catalogue
from services.inventory import api, consumers, graph, store
from services.inventory.config import InventorySettings
from services.inventory.service import Inventory


async def main() -> None:
    settings = config.load(InventorySettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    telemetry.configure(service=settings.service_name, instance=settings.instance_id)
    async with Runtime.open(settings, collections=store.COLLECTIONS) as runtime:
        inventory = Inventory(runtime.store)
        await runtime.consume(consumers.COMMANDS, consumers.handlers(inventory))
        await serve(
            settings,
            [api.service(inventory)],
            readiness=runtime.readiness(),
            authenticator=await runtime.token_verifier(catalogue.ISSUER),
            notes=runtime.notes,
            metrics=runtime.metrics,
            subgraph=graph.subgraph(inventory),
        )
