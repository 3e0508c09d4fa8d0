"""The replies of the saga's participants, handed to the order saga."""

from __future__ import annotations

from chassis.consumer import Handler
from chassis.events import Message
from chassis.saga import Saga
from chassis.topology import Subscription


def saga_replies(saga: Saga) -> tuple[Subscription, dict[type[Message], Handler]]:
    """The subscription to every reply the saga awaits, each handled by the saga."""
    types = saga.definition.reply_types
    subscription = Subscription(service="order", purpose="saga-replies", types=types)
    return subscription, dict.fromkeys(types, saga.handle_reply)
