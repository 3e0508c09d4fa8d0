"""The process's connection to RabbitMQ, and a publisher that knows when a message is safe.

Guarantees:
- one long-lived connection per process that reconnects by itself (aio-pika's robust
  connection restores channels, exchanges, queues, bindings and consumers); given the nodes of
  a cluster (URLs joined by commas), each attempt to connect goes to the next node, so the
  connection, its publishers and its consumers move to a live node when theirs dies;
- `publish()` returns only once the broker has confirmed the message, routed to at least one
  queue: it is sent persistent, with publisher confirms and `mandatory`, so an unroutable
  message raises `Unroutable` instead of vanishing, a nack raises `NotConfirmed`, and a lost
  connection raises too. Events that no subscriber binds yet are routed to their exchange's
  `.unrouted` queue (see `ordermesh.topology`); commands without a handler queue are Unroutable;
- a failed publish may still have reached the broker: callers that retry (the outbox relay)
  create duplicates, never losses, and consumers absorb duplicates;
- a confirm that does not come in time replaces the channel: RabbitMQ before 4.2 may leave
  every later publish of a channel to a quorum queue unconfirmed, for as long as the channel
  lives, once one of them was lost in a network partition (rabbitmq-server#14589; seen in
  tests/e2e/test_broker_partition.py), so the retries go out on a new channel;
- a message that cannot be published as it is raises `Refused`, which retrying will not mend:
  AMQP cannot encode it (a property too long, a header of no AMQP type), or the broker closed
  the channel over a publish (PRECONDITION_FAILED: a size over its limit, a property it
  rejects). A broker's refusal fails every publish in flight on the channel, so only a message
  refused while it was the only one in flight is known to be at fault (`Refused.certain` says
  whether the error itself proves it).

    BrokerError
    ├── Unroutable      the broker returned the message: no queue is bound for its route
    ├── NotConfirmed    the broker nacked it, or no confirm came before the timeout
    └── Refused         the message, as it is, cannot be published (see above)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Awaitable, Sequence
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq
import aiormq.exceptions
from yarl import URL

from ordermesh import telemetry
from ordermesh.events import Outgoing, amqp_properties
from ordermesh.topology import declare_exchange

__all__ = [
    "Broker",
    "BrokerError",
    "ClusterConnection",
    "NotConfirmed",
    "Refused",
    "Unroutable",
    "nodes_of",
]


class BrokerError(Exception):
    pass


class Unroutable(BrokerError):
    pass


class NotConfirmed(BrokerError):
    pass


class Refused(BrokerError):
    def __init__(self, message: str, *, certain: bool):
        super().__init__(message)
        # True if the message alone caused it (it could not be encoded); False if the broker
        # refused a publish on the channel, which may have been another message in flight.
        self.certain = certain


# Channel or connection closes that a broker answers a bad publish with (406, 501, 502, 505).
REFUSALS = (
    aiormq.exceptions.ChannelPreconditionFailed,
    aiormq.exceptions.ConnectionFrameError,
    aiormq.exceptions.ConnectionSyntaxError,
    aiormq.exceptions.ConnectionUnexpectedFrame,
)


# How long a channel that replaces one whose confirm did not come may take to open.
CHANNEL_OPEN_TIMEOUT_S = 10.0


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection to one node of a cluster at a time, the next node at each attempt.

    aio-pika connects to one URL only (mosquito/aio-pika#141). Its robust connection clears
    `transport` before every attempt to connect (the first, and each after a loss) and then
    connects to `self.url`: at that moment this one turns to the next node, so an attempt that
    fails or a connection that dies moves on. The first attempt goes to `nodes[first]`.
    """

    def __init__(self, nodes: Sequence[URL], *, first: int = 0, **kwargs: Any):
        self._nodes = list(nodes)
        self._turn = (first - 1) % len(self._nodes)  # turned once before the first attempt
        self._transport: aio_pika.abc.UnderlayConnection | None = None
        super().__init__(self._nodes[first], **kwargs)

    @property
    def transport(self) -> aio_pika.abc.UnderlayConnection | None:
        return self._transport

    @transport.setter
    def transport(self, value: aio_pika.abc.UnderlayConnection | None) -> None:
        if value is None and "url" in vars(self):  # not while Connection.__init__ runs
            self._turn = (self._turn + 1) % len(self._nodes)
            self.url = self._nodes[self._turn]
        self._transport = value


def nodes_of(url: str) -> list[URL]:
    """The node URLs in RABBITMQ_URL: one URL, or several joined by commas."""
    nodes = [URL(part.strip()) for part in url.split(",") if part.strip()]
    if not nodes:
        raise ValueError("no RabbitMQ URL given")
    for node in nodes:
        if node.scheme not in ("amqp", "amqps") or not node.host:
            raise ValueError(f"not an AMQP URL: {node.with_password(None)}")
    return nodes


class Broker:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        reconnect_interval_s: float = 1.0,
        quorum_size: int = 0,
    ):
        """`url`: a node's URL, or the URLs of a cluster's nodes joined by commas.
        `quorum_size`: how many nodes each new quorum queue has as members (0: the broker's
        default, every node of the cluster at the time)."""
        self._nodes = nodes_of(url)
        self._name = name
        self._reconnect_interval_s = reconnect_interval_s
        self.quorum_size = quorum_size
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._declaring = asyncio.Lock()

    @property
    def connection(self) -> aio_pika.abc.AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Broker.connect() was not called")
        return self._connection

    async def connect(self, *, timeout_s: float = 30.0) -> None:
        """Connects to a node that answers, trying each once from one chosen at random (so
        the processes of a system spread over the nodes)."""
        start = random.randrange(len(self._nodes))
        for attempt in range(len(self._nodes)):
            connection = ClusterConnection(
                self._nodes,
                first=(start + attempt) % len(self._nodes),
                client_properties={"connection_name": self._name},
                reconnect_interval=self._reconnect_interval_s,
            )
            try:
                await connection.connect(timeout=timeout_s)
            except aio_pika.exceptions.CONNECTION_EXCEPTIONS:
                await connection.close()
                if attempt == len(self._nodes) - 1:
                    raise
            else:
                break
        self._connection = connection
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

    async def _renew_channel(self, stale: aio_pika.abc.AbstractChannel) -> None:
        """A new channel in place of `stale`, once however many publishes on it timed out;
        the exchanges are declared again through it. If none opens in time (the connection
        down, or blocked by a broker's alarm), the stale one stays."""
        async with self._declaring:
            if self._channel is not stale:
                return
            fresh = self.connection.channel(publisher_confirms=True, on_return_raises=True)
            unused: aio_pika.abc.AbstractChannel = fresh
            try:
                await asyncio.wait_for(fresh.initialize(), CHANNEL_OPEN_TIMEOUT_S)
            except aio_pika.exceptions.CONNECTION_EXCEPTIONS:  # TimeoutError is an OSError
                pass
            else:
                self._channel, unused = fresh, stale
                self._exchanges.clear()
        with contextlib.suppress(*aio_pika.exceptions.CONNECTION_EXCEPTIONS):
            await unused.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _exchange(self, message: Outgoing) -> aio_pika.abc.AbstractExchange:
        name = message.route.exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            async with self._declaring:
                exchange = self._exchanges.get(name)
                if exchange is None:
                    assert self._channel is not None, "Broker.connect() was not called"
                    exchange = await declare_exchange(
                        self._channel, message.route, quorum_size=self.quorum_size
                    )
                    self._exchanges[name] = exchange
        return exchange

    async def publish(self, message: Outgoing, *, timeout_s: float = 10.0) -> None:
        """Publishes to the message's route and waits for the broker's confirm."""
        await self._exchange(message)  # declared once per process (and restored on reconnect)
        robust = self._channel
        assert robust is not None
        # Straight to the underlying aiormq channel: aio_pika.Message would be built only to
        # be turned into these properties. wait=False hands the frames to the connection's
        # writer without holding the channel's lock until they are written, so concurrent
        # publishes do not take turns; the confirm still says when the broker has the message
        # (measured: bench-events, docs/performance.md).
        channel = await robust.get_underlay_channel()
        assert isinstance(channel, aiormq.Channel)  # `wait` is not in aiormq's abstract channel
        await self._confirmed(
            channel.basic_publish(
                message.payload,
                exchange=message.route.exchange,
                routing_key=message.route.routing_key,
                properties=amqp_properties(
                    message.envelope, traceparent=telemetry.current_traceparent()
                ),
                mandatory=True,
                timeout=timeout_s,
                wait=False,
            ),
            f"{message.envelope.type} to {message.route.exchange}/{message.route.routing_key}",
            robust,
        )

    async def send(
        self,
        message: aio_pika.Message,
        *,
        routing_key: str,
        exchange: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        """Publishes a ready AMQP message to an existing exchange and waits for the confirm.

        The default exchange ("") delivers straight to the queue named by the routing key
        (retry and dead-letter queues); a named one must exist (dead-letter replays).
        """
        robust = self._channel
        assert robust is not None, "Broker.connect() was not called"
        target = (
            robust.default_exchange
            if not exchange
            else await robust.get_exchange(exchange, ensure=False)
        )
        await self._confirmed(
            target.publish(message, routing_key=routing_key, mandatory=True, timeout=timeout_s),
            f"{message.type} to {exchange or 'queue'} {routing_key}",
            robust,
        )

    async def _confirmed(
        self, publishing: Awaitable[object], what: str, channel: aio_pika.abc.AbstractChannel
    ) -> None:
        try:
            await publishing
        except (TypeError, ValueError, struct.error) as exc:
            # Raised while encoding the frames, before anything was sent (pamqp, aiormq).
            raise Refused(f"{what}: AMQP cannot carry it: {exc}", certain=True) from None
        except REFUSALS as exc:
            raise Refused(f"{what}: refused by the broker: {exc}", certain=False) from None
        except aio_pika.exceptions.PublishError as exc:
            raise Unroutable(f"{what}: returned by the broker, no queue is bound ({exc})") from None
        except aio_pika.exceptions.DeliveryError as exc:
            raise NotConfirmed(f"{what}: the broker did not confirm it ({exc})") from None
        except TimeoutError:
            await self._renew_channel(channel)
            raise NotConfirmed(f"{what}: no confirm before the timeout; channel replaced") from None
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            raise NotConfirmed(f"{what}: {type(exc).__name__}: {exc}") from None
