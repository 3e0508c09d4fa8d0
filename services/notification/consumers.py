"""The events the notification service listens to: accounts, preferences, order outcomes."""

from __future__ import annotations

from typing import cast

from order.v1 import events_pb2 as order_events
from order.v2 import events_pb2 as order_events_v2
from ordermesh.consumer import Handler
from ordermesh.events import Envelope, Message
from ordermesh.store import Transaction
from ordermesh.topology import Subscription
from user.v1 import events_pb2 as user_events

from services.notification import domain
from services.notification.service import Notifications

EVENTS = Subscription(
    service="notification",
    purpose="events",
    types=[
        user_events.UserRegistered,
        user_events.PreferencesUpdated,
        order_events_v2.OrderApproved,
        order_events.OrderRejected,
        order_events.OrderCancelled,
    ],
    # Replaced by order.v2.OrderApproved (docs/versioning.md): what was queued is still taken.
    draining=[order_events.OrderApproved],
)


def handlers(notifications: Notifications) -> dict[type[Message], Handler]:
    async def registered(event: user_events.UserRegistered, _: Envelope, tx: Transaction) -> None:
        await notifications.user_registered(tx, event)

    async def preferences(
        event: user_events.PreferencesUpdated, _: Envelope, tx: Transaction
    ) -> None:
        await notifications.preferences_updated(tx, event)

    def order(kind: str) -> Handler:
        async def handle(event: Message, _: Envelope, tx: Transaction) -> None:
            await notifications.order_event(tx, kind, event)  # type: ignore[arg-type]

        return handle

    return {
        user_events.UserRegistered: cast(Handler, registered),
        user_events.PreferencesUpdated: cast(Handler, preferences),
        order_events_v2.OrderApproved: order(domain.ORDER_APPROVED),
        order_events.OrderApproved: order(domain.ORDER_APPROVED),
        order_events.OrderRejected: order(domain.ORDER_REJECTED),
        order_events.OrderCancelled: order(domain.ORDER_CANCELLED),
    }
