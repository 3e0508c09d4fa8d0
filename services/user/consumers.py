"""The commands the user service takes from the order saga: reserve and release credit."""

from __future__ import annotations

from typing import cast

from ordermesh.consumer import Handler
from ordermesh.events import Envelope, Message
from ordermesh.store import Transaction
from ordermesh.topology import Subscription
from user.v1 import commands_pb2

from services.user.service import Users

COMMANDS = Subscription(
    service="user",
    purpose="commands",
    types=[commands_pb2.ReserveCredit, commands_pb2.ReleaseCredit],
)


def handlers(users: Users) -> dict[type[Message], Handler]:
    async def reserve(message: commands_pb2.ReserveCredit, _: Envelope, tx: Transaction) -> None:
        await users.reserve_credit(
            tx, order_id=message.order_id, user_id=message.user_id, amount=message.amount
        )

    async def release(message: commands_pb2.ReleaseCredit, _: Envelope, tx: Transaction) -> None:
        await users.release_credit(tx, order_id=message.order_id, user_id=message.user_id)

    return {
        commands_pb2.ReserveCredit: cast(Handler, reserve),
        commands_pb2.ReleaseCredit: cast(Handler, release),
    }
