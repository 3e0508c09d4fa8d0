"""The commands the inventory service takes from the order saga: reserve and release stock."""

from __future__ import annotations

from typing import cast

from inventory.v1 import commands_pb2
from ordermesh.consumer import Handler
from ordermesh.events import Envelope, Message
from ordermesh.store import Transaction
from ordermesh.topology import Subscription

from services.inventory.service import Inventory

COMMANDS = Subscription(
    service="inventory",
    purpose="commands",
    types=[commands_pb2.ReserveStock, commands_pb2.ReleaseStock],
)


def handlers(inventory: Inventory) -> dict[type[Message], Handler]:
    async def reserve(message: commands_pb2.ReserveStock, _: Envelope, tx: Transaction) -> None:
        await inventory.reserve_stock(tx, message)

    async def release(message: commands_pb2.ReleaseStock, _: Envelope, tx: Transaction) -> None:
        await inventory.release_stock(tx, message)

    return {
        commands_pb2.ReserveStock: cast(Handler, reserve),
        commands_pb2.ReleaseStock: cast(Handler, release),
    }
