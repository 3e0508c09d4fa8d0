"""How a consumer settles its deliveries (ordermesh.consumer names every fate): acked once the
outcome is committed, sent on to a retry or dead-letter queue (confirmed by the broker) and
only then acked, rejected when it cannot be sent on (the broker dead-letters it), or given
back to the broker when handling stopped; and the waits for faults that pass (ordermesh.faults),
before and while settling.

Every settlement is counted in the ledger under its stage (`ordermesh.ledger.Stage`), the
queue named as its subscription's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import aiormq.abc

from ordermesh import telemetry
from ordermesh.broker import Broker
from ordermesh.correlation import accepted_traceparent
from ordermesh.events import Envelope
from ordermesh.faults import Fault, passing_fault
from ordermesh.ledger import Ledger, Stage
from ordermesh.logging import get_logger
from ordermesh.topology import Subscription

__all__ = [
    "ChannelGone",
    "Delivery",
    "Interrupted",
    "Settlement",
    "Stopping",
    "consumer_span",
    "type_of",
]

log = get_logger(__name__)

Delivery = aiormq.abc.DeliveredMessage
ATTEMPTS = "x-attempts"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
# Waits between tries of a message while its infrastructure is down: doubling, at most the last.
FIRST_WAIT_S = 0.05
LONGEST_WAIT_S = 5.0
WAITING: dict[Fault, str] = {
    "infrastructure": "infrastructure fault; the message waits and is tried again",
    "contention": "contention: concurrent transactions won every rerun; the message waits and "
    "is tried again",
}
T = TypeVar("T")


class Interrupted(Exception):
    """Handling stopped with deliveries unsettled; the broker delivers them again."""


class ChannelGone(Interrupted):
    """The deliveries' channel closed: they come again on the new one."""


class Stopping(Interrupted):
    """The consumer stops while the infrastructure is down: what it holds stays unacked."""


def type_of(incoming: Delivery) -> str:
    return incoming.header.properties.message_type or "<no type>"


def consumer_span(
    queue: str, operation: str, traceparent: str, event_id: str, **attributes: Any
) -> AbstractContextManager[telemetry.Span]:
    """A CONSUMER span of a queue's work on a message (process, retry, dead-letter): a
    child of the producer's span (the trace goes on) with a link to it, as OpenTelemetry's
    messaging conventions ask."""
    producer = telemetry.extract({"traceparent": traceparent})
    return telemetry.tracer.start_as_current_span(
        f"{operation} {queue}",
        context=producer,
        kind=telemetry.SpanKind.CONSUMER,
        links=telemetry.link_to(producer),
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process" if operation == "process" else "settle",
            "messaging.operation.name": operation,
            "messaging.consumer.group.name": queue,
            "messaging.destination.subscription.name": queue,
            "messaging.message.id": event_id,
            **attributes,
        },
    )


def _copy(incoming: Delivery, headers: Mapping[str, Any]) -> aio_pika.Message:
    """The incoming message as a new persistent message, with extra headers."""
    properties = incoming.header.properties
    return aio_pika.Message(
        incoming.body,
        message_id=properties.message_id,
        type=properties.message_type,
        timestamp=properties.timestamp,
        correlation_id=properties.correlation_id,
        content_type=properties.content_type,
        app_id=properties.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={**(properties.headers or {}), **headers},
    )


def _traceparent_of(incoming: Delivery) -> str:
    headers = incoming.header.properties.headers or {}
    value = headers.get("traceparent")
    return accepted_traceparent(value.decode() if isinstance(value, bytes) else value) or ""


def _attempts(incoming: Delivery) -> int:
    value = (incoming.header.properties.headers or {}).get(ATTEMPTS, 0)
    return int(value) if isinstance(value, int | str) else 0


def _origin(incoming: Delivery) -> dict[str, Any]:
    """Where the message was first published (retries arrive from the default exchange)."""
    headers = incoming.header.properties.headers or {}
    return {
        ORIGINAL_EXCHANGE: headers.get(ORIGINAL_EXCHANGE, incoming.exchange or ""),
        ORIGINAL_ROUTING_KEY: headers.get(ORIGINAL_ROUTING_KEY, incoming.routing_key or ""),
    }


class Settlement:
    """The settling side of one consumer (`name`: its queue), over the batch in hand."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        broker: Broker,
        ledger: Ledger,
        name: str,
        stopping: asyncio.Event,
        instance: str = "",
    ):
        self._subscription = subscription
        # Named in the dead letters it writes (x-instance).
        self._instance = instance
        self._broker = broker
        self._ledger = ledger
        self._name = name
        # The queue the ledger counts under: a per-instance queue by its subscription's name.
        self._counted_as = subscription.queue()
        self._stopping = stopping
        # The deliveries of the batch in hand not yet acked or rejected, by tag.
        self.unsettled: dict[int, Delivery] = {}
        # Channels (by id) that may hold deliveries left unsettled: acked one by one.
        self._tainted: set[int] = set()

    def count(self, incoming: Delivery, stage: Stage) -> None:
        self._ledger.record(type_of(incoming), stage, queue=self._counted_as)

    async def until_done(
        self, incoming: Delivery, work: Callable[[], Awaitable[T]], *, contention: bool = True
    ) -> T:
        """`work()`, done again after each fault that passes (ordermesh.faults: the
        infrastructure's; contention too unless `contention` is False), with bounded backoff,
        until it is done; other failures are raised. Interrupted if the delivery's channel
        closes (it comes again) or the consumer stops (it stays unacked)."""
        wait_s = FIRST_WAIT_S
        waited_s = 0.0
        while True:
            try:
                return await work()
            except Exception as exc:
                fault = passing_fault(exc)
                if fault is None or (fault == "contention" and not contention):
                    raise
                if incoming.channel.is_closed:
                    raise ChannelGone from exc
                log.warning(
                    WAITING[fault],
                    fault=fault,
                    queue=self._name,
                    type=type_of(incoming),
                    event_id=incoming.header.properties.message_id,
                    wait_s=wait_s,
                    waited_s=round(waited_s, 3),
                    error=f"{type(exc).__name__}: {exc}",
                )
                self.count(incoming, Stage.WAITED)
                waited_s += wait_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._stopping.wait()
                    raise Stopping from exc
                wait_s = min(wait_s * 2, LONGEST_WAIT_S)

    async def settle(
        self, incoming: Delivery, settle: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Settles a delivery (acks it, or sends it on and acks it), waiting out infrastructure
        faults. If it cannot be settled for another reason (a copy the broker refuses), the
        delivery is rejected: the broker dead-letters it. Never left unacked behind a later ack."""
        try:
            await self.until_done(incoming, lambda: settle(incoming, *args))
        except Interrupted:
            raise
        except Exception:
            log.exception(
                "could not settle a message; the broker dead-letters it",
                queue=self._name,
                event_id=incoming.header.properties.message_id,
            )
            await self.until_done(incoming, lambda: self._reject(incoming))

    async def ack_batch(self, deliveries: list[Delivery]) -> None:
        """Acks a batch whose outcomes are committed: with one ack for all (every earlier
        delivery on the channel is settled), or one each if the channel may hold unsettled
        deliveries."""
        last = deliveries[-1]
        if id(last.channel) in self._tainted:
            for incoming in deliveries:
                await self.settle(incoming, self.ack)
        else:
            await self.settle(last, self.ack, True)

    async def ack(self, incoming: Delivery, multiple: bool = False) -> None:
        """Acks on the channel the message came on (with `multiple`, every delivery of the
        batch up to it: only ever when all of them are settled)."""
        assert incoming.delivery_tag is not None
        await incoming.channel.basic_ack(incoming.delivery_tag, multiple=multiple)
        if multiple:
            self.unsettled.clear()
        else:
            self.unsettled.pop(incoming.delivery_tag, None)

    async def _reject(self, incoming: Delivery) -> None:
        assert incoming.delivery_tag is not None
        await incoming.channel.basic_reject(incoming.delivery_tag, requeue=False)
        self.unsettled.pop(incoming.delivery_tag, None)
        self.count(incoming, Stage.DEAD_LETTERED)

    async def give_back(self) -> None:
        """Returns every unsettled delivery of the batch to the broker, to be delivered again."""
        for tag, incoming in list(self.unsettled.items()):
            try:
                await incoming.channel.basic_nack(tag, requeue=True)
            except Exception:  # noqa: BLE001 - most likely the channel is gone: they come again
                log.warning("could not give a message back; it comes again", queue=self._name)
                # Should the channel live on, no ack on it may cover more than one delivery.
                self._tainted.add(id(incoming.channel))
                return
            self.unsettled.pop(tag, None)

    def settled(self, envelope: Envelope, first_time: bool) -> None:
        outcome = Stage.PROCESSED if first_time else Stage.DUPLICATE
        self._ledger.record(envelope.type, outcome, queue=self._counted_as)
        if first_time:
            age = (datetime.now(UTC) - envelope.occurred_at).total_seconds()
            self._ledger.processed_at_age(envelope.type, self._counted_as, age)
        # Named here, not taken from the context: a batch is settled after all its messages.
        log.info(
            "message handled" if first_time else "duplicate absorbed",
            queue=self._name,
            type=envelope.type,
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            trace_id=telemetry.sampled_trace_id(envelope.traceparent),
        )

    async def retry(self, incoming: Delivery, error: Exception) -> None:
        attempts = _attempts(incoming) + 1
        delays = self._subscription.retry_delays_s
        if attempts > len(delays):
            await self.dead_letter(incoming, error, attempts)
            return
        event_id = incoming.header.properties.message_id or ""
        log.warning(
            "handler failed; retrying",
            type=type_of(incoming),
            event_id=event_id,
            attempt=attempts,
            delay_s=delays[attempts - 1],
            error=f"{type(error).__name__}: {error}",
        )
        retry = _copy(
            incoming,
            {ATTEMPTS: attempts, "x-last-error": f"{type(error).__name__}: {error}"[:1000],
             **_origin(incoming)},
        )  # fmt: skip
        attributes = {"ordermesh.retry.attempt": attempts, "error.type": type(error).__name__}
        with consumer_span(self._name, "retry", _traceparent_of(incoming), event_id, **attributes):
            await self._broker.send(retry, routing_key=self._subscription.retry_queue(attempts - 1))
        await self.ack(incoming)
        self.count(incoming, Stage.RETRIED)

    async def dead_letter(
        self, incoming: Delivery, error: Exception, attempts: int | None = None
    ) -> None:
        """Sends it to the dead-letter queue with the reason, then acks it. `attempts`: the
        tries it had (by default, those its headers count and this one)."""
        if attempts is None:
            attempts = _attempts(incoming) + 1
        event_id = incoming.header.properties.message_id or ""
        log.error(
            "message dead-lettered",
            type=type_of(incoming),
            event_id=event_id,
            attempts=attempts,
            error=f"{type(error).__name__}: {error}",
        )
        dead = _copy(
            incoming,
            {
                "x-error-class": type(error).__name__,
                "x-error-message": str(error)[:1000],
                ATTEMPTS: attempts,
                "x-consumer": self._name,
                "x-instance": self._instance,
                "x-failed-at": datetime.now(UTC).isoformat(),
                **_origin(incoming),
            },
        )
        attributes = {"ordermesh.attempts": attempts, "error.type": type(error).__name__}
        traceparent = _traceparent_of(incoming)
        with consumer_span(self._name, "dead-letter", traceparent, event_id, **attributes):
            await self._broker.send(dead, routing_key=self._subscription.dead_letter_queue)
        await self.ack(incoming)
        self.count(incoming, Stage.DEAD_LETTERED)
