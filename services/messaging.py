"""What every service does on the event backbone, in one place: the events it publishes (its
packages' events, from the contracts), the commands it sends (its sagas'), and what it
consumes (its subscriptions: queues, retry steps, dead letters). Read by the AsyncAPI
document's generator (ordermesh.asyncapi, a `Backbone`) and the contract suite; the services
themselves declare the same subscriptions from the same objects."""

from __future__ import annotations

from google.protobuf.message_factory import GetMessageClass
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.events import Message
from ordermesh.gateway.auth import consumers as auth
from ordermesh.saga import SagaDefinition
from ordermesh.store import Transaction
from ordermesh.topology import Subscription

from services import catalogue
from services.inventory import consumers as inventory
from services.notification import consumers as notification
from services.order import consumers as order
from services.order.service import order_saga
from services.user import consumers as user

__all__ = ["commands_sent", "events_published", "sagas", "subscriptions"]


async def _shape_only(tx: Transaction, *_: object) -> None:
    """The outcome callbacks of a saga definition read for its shape, never run."""


def sagas() -> dict[str, list[SagaDefinition]]:
    """The sagas each service orchestrates, by service name."""
    return {
        "order": [order_saga(on_completed=_shape_only, on_failed=_shape_only, step_timeout_s=30)]
    }


def subscriptions() -> dict[str, list[Subscription]]:
    """Every subscription of every service, by service name."""
    (saga,) = sagas()["order"]
    return {
        "user": [user.COMMANDS],
        "inventory": [inventory.COMMANDS],
        "order": [order.replies_of(saga)],
        "notification": [notification.EVENTS],
        "auth": [auth.sessions(catalogue.CATALOGUE.issuer)],
    }


def events_published() -> dict[str, list[type[Message]]]:
    """The events each service publishes: the events of its contract packages."""
    return {
        service.name: [
            GetMessageClass(m) for m in service.routed_messages(options_pb2.MESSAGE_KIND_EVENT)
        ]
        for service in catalogue.CATALOGUE.domain_services()
    }


def commands_sent() -> dict[str, list[type[Message]]]:
    """The commands each service sends: those of the sagas it orchestrates."""
    return {
        name: [t for definition in definitions for t in definition.command_types]
        for name, definitions in sagas().items()
    }
