"""The process's connection to RabbitMQ, and a publisher that knows when a message is safe.

Guarantees:
- one long-lived connection per process that reconnects by itself (aio-pika's robust
  connection restores channels, exchanges, queues, bindings and consumers);
- `publish()` returns only once the broker has confirmed the message, routed to at least one
  queue: it is sent persistent, with publisher confirms and `mandatory`, so an unroutable
  message raises `Unroutable` instead of vanishing, a nack raises `NotConfirmed`, and a lost
  connection raises too. Events that no subscriber binds yet are routed to their exchange's
  `.unrouted` queue (see `chassis.topology`); commands without a handler queue are Unroutable;
- a failed publish may still have reached the broker: callers that retry (the outbox relay)
  create duplicates, never losses, and consumers absorb duplicates;
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
import struct
from collections.abc import Awaitable

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq
import aiormq.exceptions

from chassis import telemetry
from chassis.events import Outgoing, amqp_properties
from chassis.topology import declare_exchange

__all__ = ["Broker", "BrokerError", "NotConfirmed", "Refused", "Unroutable"]


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


class Broker:
    def __init__(self, url: str, *, name: str, reconnect_interval_s: float = 1.0):
        self._url = url
        self._name = name
        self._reconnect_interval_s = reconnect_interval_s
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
        self._connection = await aio_pika.connect_robust(
            self._url,
            client_properties={"connection_name": self._name},
            timeout=timeout_s,
            reconnect_interval=self._reconnect_interval_s,
        )
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )

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
                    exchange = await declare_exchange(self._channel, message.route)
                    self._exchanges[name] = exchange
        return exchange

    async def publish(self, message: Outgoing, *, timeout_s: float = 10.0) -> None:
        """Publishes to the message's route and waits for the broker's confirm."""
        await self._exchange(message)  # declared once per process (and restored on reconnect)
        assert self._channel is not None
        # Straight to the underlying aiormq channel: aio_pika.Message would be built only to
        # be turned into these properties. wait=False hands the frames to the connection's
        # writer without holding the channel's lock until they are written, so concurrent
        # publishes do not take turns; the confirm still says when the broker has the message
        # (measured: bench-events, docs/performance.md).
        channel = await self._channel.get_underlay_channel()
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
        assert self._channel is not None, "Broker.connect() was not called"
        target = (
            self._channel.default_exchange
            if not exchange
            else await self._channel.get_exchange(exchange, ensure=False)
        )
        await self._confirmed(
            target.publish(message, routing_key=routing_key, mandatory=True, timeout=timeout_s),
            f"{message.type} to {exchange or 'queue'} {routing_key}",
        )

    @staticmethod
    async def _confirmed(publishing: Awaitable[object], what: str) -> None:
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
            raise NotConfirmed(f"{what}: no confirm before the timeout") from None
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            raise NotConfirmed(f"{what}: {type(exc).__name__}: {exc}") from None
