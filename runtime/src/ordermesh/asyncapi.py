"""The AsyncAPI 3.0 document of a project's event backbone, generated from its contracts and
its services' declarations (never written by hand):

    python -m ordermesh.asyncapi --messaging services.messaging --proto proto \
        --title "ordermesh event backbone" -o docs/asyncapi.yaml       (the example's `make gen`)

The project's messaging module (`Backbone`) says what each service publishes, sends and
consumes; its contracts (`--proto`) give the messages and their comments. Needs protoc and
PyYAML (the runtime's `generators` extra).

What it holds, and where each part comes from:
- a channel per route a message is published to (exchange and routing key, from its
  `(common.v1.route)`), with the exchange in its AMQP binding and the queues bound to it;
- a channel per queue: each subscription's work queue (the types it is bound to and those it is
  still draining), its retry queues (one per backoff step, with the delay), its dead-letter
  queue, and each event exchange's `.unrouted` queue (ordermesh.topology);
- an operation per publisher and message (`send`: the events of a service's packages, the
  commands of its sagas, the project's messaging module) and per subscription (`receive`: the
  consumer, its retry steps and dead-letter queue);
- every event and command as a message: its envelope (AMQP properties and headers,
  ordermesh.events), its lifecycle (ordermesh.lifecycle), and its payload as protobuf: a proto3
  text of the message and every message and enum it uses, rendered from the descriptors with
  their comments (ordermesh.prototext).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.events import CONTENT_TYPE, Message, route_of
from ordermesh.lifecycle import lifecycle_of
from ordermesh.prototext import Comments, contracts_with_comments, proto_text
from ordermesh.topology import UNROUTED_KEPT, Subscription, unrouted_queue

__all__ = ["Backbone", "document", "main"]


class Backbone(Protocol):
    """What a project's services do on the event backbone, by service name (a module with these
    three functions is one: the example's services.messaging)."""

    def events_published(self) -> dict[str, list[type[Message]]]: ...

    def commands_sent(self) -> dict[str, list[type[Message]]]: ...

    def subscriptions(self) -> dict[str, list[Subscription]]: ...


PROTOBUF = "application/vnd.google.protobuf;version=3"
AMQP_BINDING = "0.3.0"
# The envelope every message carries besides its payload (ordermesh.events): AMQP headers here;
# message_id (the event id), type (the full proto name), timestamp, correlation_id,
# content_type and app_id are AMQP properties.
HEADERS = {
    "type": "object",
    "properties": {
        "causation-id": {"type": "string", "description": "The event id of the message whose "
                         "handling sent this one; empty for one sent by a request."},
        "producer": {"type": "string", "description": "The service that sent it."},
        "traceparent": {"type": "string", "description": "W3C trace context of its sending."},
        "occurred-at": {"type": "string", "format": "date-time", "description": "When it was "
                        "made (written to its producer's outbox), to the microsecond; the "
                        "timestamp property has whole seconds."},
        "x-delivery-count": {"type": "integer", "description": "Set by the broker on a "
                             "redelivery (quorum queues)."},
    },
    "required": ["causation-id", "producer", "traceparent"],
}  # fmt: skip


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _name(message: type[Message]) -> str:
    return message.DESCRIPTOR.full_name


def _route_channel(message: type[Message]) -> str:
    route = route_of(message)
    return f"{route.exchange}/{route.routing_key}"


def _queue_channel(queue: str) -> str:
    return f"queue/{queue}"


def _message(message: type[Message], comments: Comments) -> dict[str, Any]:
    descriptor = message.DESCRIPTOR
    route = route_of(message)
    summary = comments.of(descriptor.full_name)
    found: dict[str, Any] = {
        "name": descriptor.full_name,
        "title": descriptor.name,
        "summary": ("A command" if route.is_command else "An event")
        + f" of {descriptor.file.package}, on {route.exchange} with key {route.routing_key!r}.",
        "contentType": CONTENT_TYPE,
        "headers": HEADERS,
        "payload": {"schemaFormat": PROTOBUF, "schema": proto_text(message, comments)},
        "bindings": {"amqp": {"messageType": descriptor.full_name, "bindingVersion": AMQP_BINDING}},
    }
    if summary:
        found["description"] = summary
    options = descriptor.GetOptions()
    if options.HasExtension(options_pb2.message_lifecycle):
        lifecycle = lifecycle_of(descriptor.full_name, options, options_pb2.message_lifecycle)
        found["x-lifecycle"] = {"stability": lifecycle.stability_name}
        if lifecycle.deprecated:
            found["x-lifecycle"].update(
                deprecated=str(lifecycle.deprecated_at.date()) if lifecycle.deprecated_at else "",
                sunset=str(lifecycle.sunset_at.date()) if lifecycle.sunset_at else "",
                successor=lifecycle.successor,
            )
            found["description"] = (
                f"{summary}\n\nDeprecated: {lifecycle.successor} replaces it; published beside "
                f"it until {found['x-lifecycle']['sunset']} (docs/versioning.md)."
            ).strip()
    return found


def _queue(
    name: str, description: str, messages: Iterable[type[Message]], **queue: Any
) -> dict[str, Any]:
    return {
        "address": name,
        "title": name,
        "description": description,
        "messages": {_name(m): _ref("components", "messages", _name(m)) for m in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {"name": name, "durable": True, "exclusive": False,
                          "autoDelete": False, "vhost": "/", **queue},
                "bindingVersion": AMQP_BINDING,
            }
        },
    }  # fmt: skip


def _failures(subscription: Subscription) -> str:
    """What happens to a message of the subscription whose handling fails."""
    waits = ", then ".join(
        f"{delay:g} s in {subscription.retry_queue(n)}"
        for n, delay in enumerate(subscription.retry_delays_s)
    )
    retried = f"waits {waits}, tried again after each; then it is" if waits else "is"
    return (
        f"A message whose handling fails {retried} dead-lettered to "
        f"{subscription.dead_letter_queue}; at once if it cannot be decoded or fails for good, "
        f"and by the broker after {subscription.delivery_limit} deliveries (its consumer "
        "crashed on it each time)."
    )


def _subscription_channels(subscription: Subscription) -> dict[str, Any]:
    """The work queue of a subscription (first), its retry queues and its dead-letter queue."""
    work = subscription.queue("<instance>" if subscription.per_instance else "")
    shared = "one per instance" if subscription.per_instance else "quorum, shared by instances"
    bound = ", ".join(f"{r.exchange} {r.routing_key!r}" for r in subscription.routes)
    description = f"The {subscription.service} service's queue ({shared}), bound to {bound}. "
    if subscription.draining:
        draining = ", ".join(_name(t) for t in subscription.draining)
        description += f"Still takes {draining}, replaced by a successor and no longer bound. "
    per_instance = subscription.per_instance
    channels = {
        _queue_channel(work): _queue(
            work,
            description + _failures(subscription),
            subscription.handled,
            exclusive=per_instance,
            autoDelete=per_instance,
            durable=not per_instance,
        )
    }
    for n, delay in enumerate(subscription.retry_delays_s):
        name = subscription.retry_queue(n)
        channels[_queue_channel(name)] = _queue(
            name,
            f"Retry step {n + 1} of {work}: a message waits {delay:g} s, then goes back to it.",
            subscription.handled,
        )
    channels[_queue_channel(subscription.dead_letter_queue)] = _queue(
        subscription.dead_letter_queue,
        f"Dead letters of {work}, with their failure in headers; an operator lists and "
        "replays them (ordermesh.deadletters).",
        subscription.handled,
    )
    return channels


def document(
    backbone: Backbone,
    comments: Comments,
    *,
    title: str = "event backbone",
    broker: str = "127.0.0.1:5672",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the backbone, its messages described with `comments` (of
    the contracts that define them), its broker at `broker`."""
    published = backbone.events_published()
    sent = backbone.commands_sent()
    subscriptions = backbone.subscriptions()
    every = {_name(m): m for found in (*published.values(), *sent.values()) for m in found}
    for found in subscriptions.values():
        every.update({_name(m): m for s in found for m in s.handled})
    bound_to: dict[str, list[str]] = {}
    for found in subscriptions.values():
        for subscription in found:
            for message in subscription.types:
                bound_to.setdefault(_route_channel(message), []).append(subscription.queue())

    channels: dict[str, Any] = {}
    for name, message in sorted(every.items()):
        route = route_of(message)
        channel = channels.setdefault(
            _route_channel(message),
            {
                "address": route.routing_key,
                "title": f"{route.exchange} {route.routing_key}",
                "messages": {},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": route.exchange,
                                     "type": route.exchange_type.value,
                                     "durable": True, "autoDelete": False, "vhost": "/"},
                        "bindingVersion": AMQP_BINDING,
                    }
                },
            },
        )  # fmt: skip
        channel["messages"][name] = _ref("components", "messages", name)
        queues = bound_to.get(_route_channel(message), [])
        channel["description"] = (
            f"Published to the {route.exchange} exchange with routing key {route.routing_key!r}; "
            + (f"bound to {', '.join(queues)}." if queues else
               f"no queue of ours is bound: kept in {unrouted_queue(route.exchange)}"
               if not route.is_command else "no queue is bound.")
        )  # fmt: skip
    operations: dict[str, Any] = {}
    for service, messages in sorted(_merge(published, sent).items()):
        for message in messages:
            channel = _route_channel(message)
            kind = "sends the command" if route_of(message).is_command else "publishes"
            operations[f"{service}.send.{_name(message)}"] = {
                "action": "send",
                "channel": _ref("channels", channel),
                "title": f"{service} {kind} {message.DESCRIPTOR.name}",
                "summary": f"The {service} service {kind} {_name(message)}, from its outbox "
                "(persistent, publisher-confirmed, mandatory).",
                "messages": [_ref("channels", channel, "messages", _name(message))],
                "x-service": service,
            }
    for exchange in sorted(
        {route_of(m).exchange for m in every.values() if not route_of(m).is_command}
    ):
        queue = unrouted_queue(exchange)
        channels[_queue_channel(queue)] = _queue(
            queue,
            f"Events of {exchange} that no subscriber's binding matches, kept (the newest "
            f"{UNROUTED_KEPT:,}): the queue of the exchange's alternate exchange.",
            [m for m in every.values() if route_of(m).exchange == exchange],
        )
    for service, found in sorted(subscriptions.items()):
        for subscription in found:
            queue_channels = _subscription_channels(subscription)
            channels.update(queue_channels)
            work = next(iter(queue_channels))
            operations[f"{service}.receive.{subscription.purpose}"] = {
                "action": "receive",
                "channel": _ref("channels", work),
                "title": f"{service} consumes {subscription.queue()}",
                "summary": queue_channels[work]["description"],
                "messages": [
                    _ref("channels", work, "messages", _name(m)) for m in subscription.handled
                ],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
                "x-service": service,
                "x-retry": {
                    "delays_s": list(subscription.retry_delays_s),
                    "queues": [
                        subscription.retry_queue(n)
                        for n in range(len(subscription.retry_delays_s))
                    ],
                    "dead_letter_queue": subscription.dead_letter_queue,
                    "delivery_limit": subscription.delivery_limit,
                },
            }  # fmt: skip
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "The events and commands on RabbitMQ: who publishes, who consumes, "
            "through which exchanges and queues. Generated from the contracts and the services' "
            "subscriptions (ordermesh.asyncapi); do not edit. Payloads are protobuf (binary); the "
            "envelope is in AMQP properties and headers.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "broker": {
                "host": broker,
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ broker (each service's RABBITMQ_URL).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": {name: _message(m, comments) for name, m in sorted(every.items())}
        },
    }


def _merge(
    published: dict[str, list[type[Message]]], sent: dict[str, list[type[Message]]]
) -> dict[str, list[type[Message]]]:
    return {s: [*published.get(s, []), *sent.get(s, [])] for s in {*published, *sent}}


def main(argv: list[str] | None = None) -> None:
    import yaml  # only when generating: PyYAML, the `generators` extra

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messaging", required=True, help="the project's Backbone (a module)")
    parser.add_argument("--proto", type=Path, required=True, help="the contracts' directory")
    parser.add_argument("--title", default="event backbone")
    parser.add_argument("--broker", default="127.0.0.1:5672", help="the broker's host:port")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    backbone: Backbone = importlib.import_module(args.messaging)
    found = document(
        backbone,
        Comments(contracts_with_comments(args.proto)),
        title=args.title,
        broker=args.broker,
    )
    header = "# Generated from the contracts (ordermesh.asyncapi): do not edit.\n"
    rendered = yaml.safe_dump(found, sort_keys=False, width=100, allow_unicode=True)
    args.output.write_text(header + rendered)


if __name__ == "__main__":
    main()
