"""RabbitMQ topology derived from the contracts: exchanges, queues, bindings, retries, DLQs.

A service names what it publishes (message types) and what it consumes (a `Subscription`: a
queue purpose and message types); the exchanges, routing keys and exchange kinds come from each
type's `(common.v1.route)`. Declaring is idempotent, so every process declares what it uses at
start and a broker that lost its definitions gets them back.

For a subscription `<service>.<purpose>` this declares:
- the work queue `<service>.<purpose>`: durable, quorum, bound to each type's route; a message
  delivered more than `delivery_limit` times (its consumer crashed on it each time) is
  dead-lettered by the broker, at least once;
- one retry queue per backoff step, `<queue>.retry.<n>`: a message waits there for the step's
  delay (one fixed TTL per queue, so messages expire in order) and goes back to the work queue;
- the dead-letter queue `<queue>.dlq`, where messages end with their failure in headers.

A consumer moving from a message type to its successor (docs/versioning.md) lists the old type
as `draining`: still handled, no longer bound. The successor is bound before the old binding
goes, so from the moment its queue is declared every fact reaches the queue in one type or both
(the producer publishes both during the migration window; the handler keeps a fact once), and
what was queued in the old type before is still handled, not dead-lettered as unknown.

A subscription marked `per_instance` (for fanout exchanges, where every instance must see every
message) gets a queue of its own per process, which goes away with the process; it has no retry
queues (a retry queue routes back to one queue), so its failures go to the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aio_pika.abc

from ordermesh.events import Message, Route, route_of

__all__ = [
    "UNROUTED_KEPT",
    "Subscription",
    "declare_exchange",
    "declare_exchanges",
    "declare_subscription",
    "unrouted_queue",
]


UNROUTED_KEPT = 100_000


def _quorum(size: int, **arguments: Any) -> dict[str, Any]:
    """A quorum queue's arguments; `size`: its members at creation (0: the broker's default,
    every node of the cluster). The broker holds a queue to the size it was created with: an
    existing queue declared with another one is refused (PRECONDITION_FAILED)."""
    if size:
        arguments["x-quorum-initial-group-size"] = size
    return {"x-queue-type": "quorum", **arguments}


@dataclass(frozen=True)
class Subscription:
    """What a service consumes into one queue, and how failures are retried."""

    service: str
    purpose: str
    types: Sequence[type[Message]]
    # Delay of each retry step, in seconds; after the last, the message is dead-lettered.
    retry_delays_s: Sequence[float] = (1.0, 5.0, 30.0)
    # How many deliveries (crashes of the consumer on it) before the broker dead-letters it.
    delivery_limit: int = 10
    prefetch: int = 32
    per_instance: bool = False
    # Types being replaced by a successor in `types`: handled, no longer bound (see above).
    draining: Sequence[type[Message]] = ()

    def __post_init__(self) -> None:
        if self.per_instance and self.retry_delays_s:
            raise ValueError(f"{self.service}.{self.purpose}: per-instance queues have no retries")
        if not self.types:
            raise ValueError(f"{self.service}.{self.purpose}: a subscription needs message types")

    def queue(self, instance: str = "") -> str:
        base = f"{self.service}.{self.purpose}"
        return f"{base}.{instance}" if self.per_instance else base

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.service}.{self.purpose}.dlq"

    def retry_queue(self, step: int) -> str:
        return f"{self.service}.{self.purpose}.retry.{step}"

    @property
    def handled(self) -> list[type[Message]]:
        """Every type its consumer takes: what it is bound to, and what it is draining."""
        return [*self.types, *self.draining]

    @property
    def routes(self) -> list[Route]:
        return [route_of(t) for t in self.types]


def unrouted_queue(exchange: str) -> str:
    return f"{exchange}.unrouted"


async def declare_exchange(
    channel: aio_pika.abc.AbstractChannel, route: Route, *, quorum_size: int = 0
) -> aio_pika.abc.AbstractExchange:
    """Declares a route's exchange, durable; every declaration of it goes through here.

    An event exchange gets an alternate exchange whose queue `<exchange>.unrouted` keeps the
    events that no subscriber's binding matches (a fact nobody listens to yet is kept, not
    dropped and not an error), the newest `UNROUTED_KEPT` of them: a bound, because events
    that nobody will ever consume must not fill the broker's disk. A command exchange has none:
    a command that no handler's queue would receive is returned to the publisher, which keeps
    it and retries.
    """
    arguments: dict[str, Any] = {}
    if not route.is_command:
        alternate = unrouted_queue(route.exchange)
        fallback = await channel.declare_exchange(
            alternate, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            alternate,
            durable=True,
            arguments=_quorum(
                quorum_size, **{"x-max-length": UNROUTED_KEPT, "x-overflow": "drop-head"}
            ),
        )
        await queue.bind(fallback)
        arguments["alternate-exchange"] = alternate
    return await channel.declare_exchange(
        route.exchange, route.exchange_type, durable=True, arguments=arguments
    )


async def declare_exchanges(
    channel: aio_pika.abc.AbstractChannel, types: Iterable[type[Message]], *, quorum_size: int = 0
) -> dict[str, aio_pika.abc.AbstractExchange]:
    """Declares the exchanges of these message types, by name."""
    exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
    for route in {route_of(t) for t in types}:
        if route.exchange not in exchanges:
            exchanges[route.exchange] = await declare_exchange(
                channel, route, quorum_size=quorum_size
            )
    return exchanges


async def declare_subscription(
    channel: aio_pika.abc.AbstractChannel,
    subscription: Subscription,
    *,
    instance: str = "",
    quorum_size: int = 0,
) -> aio_pika.abc.AbstractQueue:
    """Declares the work, retry and dead-letter queues of a subscription; returns the work queue.
    `quorum_size`: the members of each quorum queue created (0: the broker's default)."""
    exchanges = await declare_exchanges(channel, subscription.handled, quorum_size=quorum_size)
    work = subscription.queue(instance)
    if subscription.per_instance and not instance:
        raise ValueError(f"{work}: a per-instance subscription needs the instance id")
    await channel.declare_queue(
        subscription.dead_letter_queue, durable=True, arguments=_quorum(quorum_size)
    )
    for step, delay_s in enumerate(subscription.retry_delays_s):
        await channel.declare_queue(
            subscription.retry_queue(step),
            durable=True,
            arguments=_quorum(
                quorum_size,
                **{
                    "x-message-ttl": int(delay_s * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            ),
        )
    if subscription.per_instance:
        queue = await channel.declare_queue(work, durable=False, exclusive=True)
    else:
        queue = await channel.declare_queue(
            work,
            durable=True,
            arguments=_quorum(
                quorum_size,
                **{
                    "x-delivery-limit": subscription.delivery_limit,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": subscription.dead_letter_queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            ),
        )
    for route in subscription.routes:
        await queue.bind(exchanges[route.exchange], routing_key=route.routing_key)
    # After the successors' bindings (an unbinding of what is not bound changes nothing).
    for route in {route_of(t) for t in subscription.draining} - set(subscription.routes):
        await queue.unbind(exchanges[route.exchange], routing_key=route.routing_key)
    return queue
