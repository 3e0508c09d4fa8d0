"""The replies of the saga's participants, handed to the order saga."""

from __future__ import annotations

from ordermesh.consumer import Handler
from ordermesh.events import Message
from ordermesh.saga import Saga, SagaDefinition
from ordermesh.topology import Subscription


def replies_of(definition: SagaDefinition) -> Subscription:
    """The subscription to every reply the saga awaits."""
    return Subscription(service="order", purpose="saga-replies", types=definition.reply_types)


def saga_replies(saga: Saga) -> tuple[Subscription, dict[type[Message], Handler]]:
    """The subscription to the saga's replies, each handled by the saga."""
    subscription = replies_of(saga.definition)
    return subscription, dict.fromkeys(subscription.types, saga.handle_reply)
