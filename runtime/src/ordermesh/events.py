"""Events and commands on the wire: protobuf bytes in the body, the envelope in AMQP properties.

Guarantees:
- every message's route (exchange, kind, routing key) comes from its `(common.v1.route)` option
  in the contract; a message type without one cannot be sent;
- every message carries its envelope: `message_id` (the event id, a UUID), `type` (the full
  proto name), `timestamp`, `correlation_id`, `content_type: application/x-protobuf`, and the
  headers `causation-id`, `producer` and `traceparent`; it is persistent;
- decoding names what is wrong with a message that cannot be handled (`Undecodable`), so the
  consumer can dead-letter it at once with that reason.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq
from google.protobuf import message as protobuf_message
from google.protobuf.descriptor import Descriptor

from ordermesh import telemetry
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.correlation import (
    accepted_correlation_id,
    accepted_traceparent,
    adopt,
    causation_id,
    correlation_id,
    new_correlation_id,
    traceparent,
)

__all__ = [
    "CONTENT_TYPE",
    "Envelope",
    "Message",
    "Outgoing",
    "Route",
    "TypeRegistry",
    "Undecodable",
    "amqp_properties",
    "outgoing",
    "route_of",
]

CONTENT_TYPE = "application/x-protobuf"
EXCHANGE_KINDS = {
    options_pb2.EXCHANGE_KIND_TOPIC: aio_pika.ExchangeType.TOPIC,
    options_pb2.EXCHANGE_KIND_DIRECT: aio_pika.ExchangeType.DIRECT,
    options_pb2.EXCHANGE_KIND_FANOUT: aio_pika.ExchangeType.FANOUT,
}

Message = protobuf_message.Message


class Undecodable(Exception):
    """A message that no handler can take: unknown type, missing envelope or bad bytes."""


@dataclass(frozen=True)
class Route:
    exchange: str
    exchange_type: aio_pika.ExchangeType
    routing_key: str
    is_command: bool


def route_of(message: type[Message] | Message | Descriptor) -> Route:
    """The route a message type declares in its contract; ValueError if it declares none."""
    descriptor = message if isinstance(message, Descriptor) else message.DESCRIPTOR
    return _route_of_descriptor(descriptor)


@functools.cache
def _route_of_descriptor(descriptor: Descriptor) -> Route:
    options = descriptor.GetOptions()
    if not options.HasExtension(options_pb2.route):
        raise ValueError(f"{descriptor.full_name} declares no (common.v1.route) in its contract")
    route = options.Extensions[options_pb2.route]
    return Route(
        exchange=route.exchange,
        exchange_type=EXCHANGE_KINDS[route.exchange_kind],
        routing_key=route.routing_key,
        is_command=route.kind == options_pb2.MESSAGE_KIND_COMMAND,
    )


@dataclass(frozen=True)
class Envelope:
    event_id: str
    type: str
    occurred_at: datetime
    correlation_id: str
    causation_id: str
    producer: str
    traceparent: str
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """A message ready to leave: what the outbox stores and the relay publishes."""

    envelope: Envelope
    route: Route
    payload: bytes


def outgoing(message: Message, *, producer: str) -> Outgoing:
    """Wraps a message for sending, with a new event id and the ids of the work in progress."""
    # The edges accept only safe ids; checked again here as nothing else may reach AMQP.
    correlation = accepted_correlation_id(correlation_id.get()) or new_correlation_id()
    return Outgoing(
        envelope=Envelope(
            event_id=str(uuid.uuid4()),
            type=message.DESCRIPTOR.full_name,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation,
            causation_id=causation_id.get() or "",
            producer=producer,
            # The span at work (the request's, or the handler's) when traces are on; else one
            # derived from the correlation id, so that a flow's messages share a trace id.
            traceparent=telemetry.current_traceparent() or traceparent(correlation),
        ),
        route=route_of(message),
        payload=message.SerializeToString(),
    )


def amqp_properties(
    envelope: Envelope, *, traceparent: str | None = None
) -> aiormq.spec.Basic.Properties:
    """The AMQP properties that carry an envelope; the body is the message's protobuf bytes.
    `traceparent`, the publish span's, replaces the envelope's (the span that made it)."""
    return aiormq.spec.Basic.Properties(
        message_id=envelope.event_id,
        message_type=envelope.type,
        timestamp=envelope.occurred_at,
        correlation_id=envelope.correlation_id,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        app_id=envelope.producer,
        headers={
            **envelope.headers,
            "causation-id": envelope.causation_id,
            "producer": envelope.producer,
            "traceparent": traceparent or envelope.traceparent,
            # The timestamp property has whole seconds: this, the microseconds.
            "occurred-at": envelope.occurred_at.isoformat(),
        },
    )


def _occurred_at(header: object, timestamp: datetime | None) -> datetime:
    """When the message was made: its `occurred-at` header (to the microsecond), else the
    timestamp property (to the second: a producer before the header), else now."""
    try:
        made = datetime.fromisoformat(_text(header))
    except ValueError:
        return timestamp or datetime.now(UTC)
    return made if made.tzinfo is not None else made.replace(tzinfo=UTC)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


class TypeRegistry:
    """Decodes the message types a consumer declared it handles, and nothing else."""

    def __init__(self, types: Iterable[type[Message]]):
        self._types = {t.DESCRIPTOR.full_name: t for t in types}

    def __contains__(self, full_name: str) -> bool:
        return full_name in self._types

    def decode(self, incoming: aiormq.abc.DeliveredMessage) -> tuple[Envelope, Message]:
        properties = incoming.header.properties
        if not properties.message_id:
            raise Undecodable("no message_id: the event id is missing")
        type = properties.message_type
        if not type:
            raise Undecodable("no type property: cannot tell which message this is")
        message_type = self._types.get(type)
        if message_type is None:
            raise Undecodable(f"unknown type {type!r}: no handler declared for it")
        if properties.content_type != CONTENT_TYPE:
            raise Undecodable(f"content type {properties.content_type!r} is not {CONTENT_TYPE}")
        try:
            decoded = message_type.FromString(incoming.body)
        except protobuf_message.DecodeError as exc:
            raise Undecodable(f"body is not a valid {type}: {exc}") from None
        headers = dict(properties.headers or {})
        envelope = Envelope(
            event_id=properties.message_id,
            type=type,
            occurred_at=_occurred_at(headers.get("occurred-at"), properties.timestamp),
            correlation_id=adopt(
                properties.correlation_id, source=f"amqp message {properties.message_id}"
            ),
            causation_id=_text(headers.get("causation-id")),
            producer=_text(headers.get("producer")),
            traceparent=accepted_traceparent(_text(headers.get("traceparent"))) or "",
            headers=headers,
        )
        return envelope, decoded
