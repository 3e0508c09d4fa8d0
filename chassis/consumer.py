"""Consumers with explicit outcomes: every message is processed once, retried, or dead-lettered.

For each delivery of a subscription's queue, exactly one of these happens:
- processed: the handler ran in a transaction that also recorded the event id in the inbox;
  the message is acked only after that transaction committed;
- duplicate: the inbox already holds its event id (a redelivery, or a re-publish by the
  outbox); it is acked with no second effect;
- retried: the handler failed through the message's own fault (a bug, a domain Conflict: what
  it needs is not there yet); a copy goes to the retry queue of the next backoff step
  (confirmed by the broker) and only then is the original acked;
- dead-lettered: the message cannot be decoded or has an unknown type (at once), the handler
  raised a DomainError (a message that can never apply), or it failed on every retry step; a
  copy goes to `<queue>.dlq` with the reason in headers, then the original is acked.

An infrastructure fault (chassis.faults: the store locked past its busy timeout, its disk
full or read-only, the broker gone while settling, a dependency that cannot answer) is not the
message's fault and uses up no retry step: the message waits, with doubling waits of at most
`LONGEST_WAIT_S`, and is tried again until the infrastructure is back, holding back the
messages after it (they would meet the same fault). Contention is waited out the same way: a
transaction that lost to concurrent ones on every rerun of `run_transaction` (a
VersionConflict: many consumers on one document, a row held by a long transaction) says
nothing about the message either. Each wait is logged with its kind and counted (the ledger's
`waited`); a handler that conflicts with itself every time (a bug) would hold its queue, in
plain sight there. Stopping the consumer, or losing the channel, ends the wait with the message
unacked: the broker delivers it again.

Messages that arrive together are handled together, in arrival order: one transaction for a
batch, then one ack for all of it; if any handler of the batch fails, the batch is rolled back
and each of its messages is handled in a transaction of its own, to its own outcome. An ack
only ever covers messages whose outcome is committed: each message is settled before the next
is handled, a message that cannot be settled is rejected (the broker dead-letters it), and if
handling a batch fails unexpectedly, what it left unsettled is given back to the broker.

Nothing is acked before its outcome is safe; a crash at any point leads to a redelivery, which
the inbox absorbs. A consumer that crashes on a message every time (a poison message that
kills the process) is covered by the broker: after `delivery_limit` deliveries the work queue
dead-letters it. The consumer keeps going after every failure.

Dead-letter headers: `x-error-class`, `x-error-message`, `x-attempts`, `x-consumer`,
`x-failed-at`, `x-original-exchange`, `x-original-routing-key`.

Deliveries are taken from aio-pika's channel at the aiormq level (one task per delivery instead
of two, and no `IncomingMessage` built per delivery; measured: bench-events): aio-pika still
declares the queues and restores them after a reconnection, and the consumer then subscribes
again on the new channel; if the broker cancels the subscription (its queue deleted), it
declares the subscription again and resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc
import aiormq.abc
from pamqp.commands import Basic

from chassis import telemetry
from chassis.broker import Broker
from chassis.correlation import accepted_traceparent, causation_id, correlation_id
from chassis.errors import Conflict, DomainError
from chassis.events import Envelope, Message, TypeRegistry, Undecodable
from chassis.faults import Fault, passing_fault
from chassis.ledger import Ledger
from chassis.logging import get_logger
from chassis.store import Store, Transaction, run_transaction
from chassis.topology import Subscription, declare_subscription

__all__ = ["Consumer", "Handler"]

log = get_logger(__name__)

Handler = Callable[[Message, Envelope, Transaction], Awaitable[None]]
ATTEMPTS = "x-attempts"
# Most messages handled in one transaction (and acked with one frame).
BATCH = 64
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"


Delivery = aiormq.abc.DeliveredMessage
RESUBSCRIBE_INTERVAL_S = 1.0
# Waits between tries of a message while its infrastructure is down: doubling, at most the last.
FIRST_WAIT_S = 0.05
LONGEST_WAIT_S = 5.0
WAITING: dict[Fault, str] = {
    "infrastructure": "infrastructure fault; the message waits and is tried again",
    "contention": "contention: concurrent transactions won every rerun; the message waits and "
    "is tried again",
}
T = TypeVar("T")


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


def _type_of(incoming: Delivery) -> str:
    return incoming.header.properties.message_type or "<no type>"


class _Interrupted(Exception):
    """Handling stopped with deliveries unsettled; the broker delivers them again."""


class _ChannelGone(_Interrupted):
    """The deliveries' channel closed: they come again on the new one."""


class _Stopping(_Interrupted):
    """The consumer stops while the infrastructure is down: what it holds stays unacked."""


class Consumer:
    def __init__(
        self,
        subscription: Subscription,
        handlers: Mapping[type[Message], Handler],
        *,
        store: Store,
        broker: Broker,
        instance: str = "",
        ledger: Ledger | None = None,
    ):
        missing = set(subscription.handled) ^ set(handlers)
        if missing:
            names = sorted(t.DESCRIPTOR.full_name for t in missing)
            raise ValueError(f"{subscription.queue()}: types and handlers differ on {names}")
        self.subscription = subscription
        self._handlers = {t.DESCRIPTOR.full_name: h for t, h in handlers.items()}
        self._types = TypeRegistry(handlers)
        self._store = store
        self._broker = broker
        self._instance = instance
        self._ledger = ledger or Ledger()
        self.name = subscription.queue(instance)
        # The queue the ledger counts under: a per-instance queue by its subscription's name.
        self._counted_as = subscription.queue()
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None
        self._resubscribing: asyncio.Task[None] | None = None
        # Deliveries not yet handled, in arrival order, and the task that handles them.
        self._waiting: deque[Delivery] = deque()
        self._drainer: asyncio.Task[None] | None = None
        # The deliveries of the batch in hand not yet acked or rejected, by tag.
        self._unsettled: dict[int, Delivery] = {}
        # Channels (by id) that may hold deliveries left unsettled: acked one by one.
        self._tainted: set[int] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Declares the subscription's queues and starts consuming (manual acks)."""
        self._channel = await self._broker.connection.channel()
        await self._channel.set_qos(prefetch_count=self.subscription.prefetch)
        self._queue = await declare_subscription(
            self._channel,
            self.subscription,
            instance=self._instance,
            quorum_size=self._broker.quorum_size,
        )
        # aio-pika reopens the channel and restores the queue after a reconnection.
        self._channel.reopen_callbacks.add(self._on_reopened)
        await self._subscribe()

    async def stop(self) -> None:
        """Stops taking messages and lets those taken finish (unless they wait for the
        infrastructure); unacked ones are redelivered."""
        self._stopping.set()
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        if self._channel is not None:
            self._channel.reopen_callbacks.discard(self._on_reopened)
            if self._tag is not None:
                channel = await self._channel.get_underlay_channel()
                await channel.basic_cancel(self._tag)
                self._tag = None
        if self._drainer is not None:
            await self._drainer
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _subscribe(self) -> None:
        assert self._channel is not None
        assert self._queue is not None
        channel = await self._channel.get_underlay_channel()
        channel.on_consumer_cancel_callbacks.add(self._on_cancelled)
        subscribed = await channel.basic_consume(self._queue.name, self._on_delivery)
        self._tag = subscribed.consumer_tag

    async def _on_reopened(self, _: object) -> None:
        await self._subscribe()

    def _on_cancelled(self, frame: Basic.Cancel) -> None:
        """The broker ended the subscription (its queue was deleted): declare it again and
        subscribe, at intervals until that works."""
        if frame.consumer_tag != self._tag or self._resubscribing is not None:
            return
        log.warning("subscription cancelled by the broker; subscribing again", queue=self.name)
        self._tag = None
        self._resubscribing = asyncio.create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        assert self._channel is not None
        try:
            while True:
                await asyncio.sleep(RESUBSCRIBE_INTERVAL_S)
                try:
                    # The queue's bindings went with it: declare the whole subscription again.
                    self._queue = await declare_subscription(
                        self._channel,
                        self.subscription,
                        instance=self._instance,
                        quorum_size=self._broker.quorum_size,
                    )
                    await self._subscribe()
                except Exception:  # noqa: BLE001 - the broker is not ready: try again
                    log.warning("could not subscribe again yet", queue=self.name)
                else:
                    return
        finally:
            self._resubscribing = None

    async def _on_delivery(self, incoming: Delivery) -> None:
        self._ledger.record(_type_of(incoming), "delivered", queue=self._counted_as)
        self._waiting.append(incoming)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        """Handles what has arrived, in arrival order, a batch per transaction, until all is.

        A batch holds deliveries of one channel (tags count per channel; after a reconnection
        the old channel's deliveries are delivered again on the new one)."""
        try:
            while self._waiting:
                first = self._waiting.popleft()
                batch = [first]
                while (
                    self._waiting
                    and len(batch) < BATCH
                    and self._waiting[0].channel is first.channel
                ):
                    batch.append(self._waiting.popleft())
                if first.channel.is_closed:
                    continue  # they come again on the new channel
                self._unsettled = {d.delivery_tag or 0: d for d in batch}
                try:
                    await self._handle_batch(batch)
                except _ChannelGone:
                    log.warning(
                        "channel closed while settling; the messages come again",
                        queue=self.name,
                        count=len(self._unsettled),
                    )
                except _Stopping:
                    return  # what is held stays unacked; the broker delivers it again
                except Exception:  # a bug here must not lose what the batch held
                    log.exception(
                        "could not handle messages; they are given back to the broker",
                        queue=self.name,
                        count=len(self._unsettled),
                    )
                    await self._give_back()
        finally:
            self._drainer = None

    async def _handle_batch(self, batch: list[Delivery]) -> None:
        """All of a batch in one transaction; if any handler fails, each message on its own."""
        decoded = []
        for incoming in batch:
            try:
                envelope, message = self._types.decode(incoming)
            except Undecodable as exc:
                await self._settle(incoming, self._dead_letter, exc, 0)
                continue
            decoded.append((incoming, envelope, message))
        if not decoded:
            return
        if len(decoded) > 1:
            last = decoded[-1][0]
            try:
                # Contention is not waited out here: one by one, the messages that meet
                # none commit, and each that does waits on its own.
                firsts = await self._until_done(
                    last,
                    lambda: run_transaction(self._store, lambda tx: self._apply_all(tx, decoded)),
                    contention=False,
                )
            except _Interrupted:
                raise
            except Exception:  # noqa: BLE001 - a message's own fault, or contention: one by one
                pass
            else:
                if id(last.channel) in self._tainted:  # it may hold unsettled deliveries
                    for incoming, _, _ in decoded:
                        await self._settle(incoming, self._ack)
                else:  # every earlier delivery on the channel is settled: one ack for all
                    await self._settle(last, self._ack, True)
                for (_, envelope, _), first in zip(decoded, firsts, strict=True):
                    self._settled(envelope, first)
                return
        for item in decoded:
            await self._handle_one(*item)

    async def _apply(self, tx: Transaction, envelope: Envelope, message: Message) -> bool:
        """Runs the handler unless the inbox has seen the message; True if it ran."""
        correlation_id.set(envelope.correlation_id)
        causation_id.set(envelope.event_id)
        with self._span("process", envelope.traceparent, envelope.event_id) as span:
            if not await tx.first_time(self.name, envelope.event_id):
                span.set_attribute("ordermesh.message.duplicate", True)
                return False
            await self._handlers[envelope.type](message, envelope, tx)
            return True

    def _span(
        self, operation: str, traceparent: str, event_id: str, **attributes: Any
    ) -> AbstractContextManager[telemetry.Span]:
        """A CONSUMER span of this queue's work on a message (process, retry, dead-letter): a
        child of the producer's span (the trace goes on) with a link to it, as OpenTelemetry's
        messaging conventions ask."""
        producer = telemetry.extract({"traceparent": traceparent})
        return telemetry.tracer.start_as_current_span(
            f"{operation} {self.name}",
            context=producer,
            kind=telemetry.SpanKind.CONSUMER,
            links=telemetry.link_to(producer),
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process" if operation == "process" else "settle",
                "messaging.operation.name": operation,
                "messaging.consumer.group.name": self.name,
                "messaging.destination.subscription.name": self.name,
                "messaging.message.id": event_id,
                **attributes,
            },
        )

    async def _apply_all(
        self,
        tx: Transaction,
        decoded: list[tuple[Delivery, Envelope, Message]],
    ) -> list[bool]:
        return [await self._apply(tx, envelope, message) for _, envelope, message in decoded]

    async def _handle_one(self, incoming: Delivery, envelope: Envelope, message: Message) -> None:
        try:
            first = await self._until_done(
                incoming,
                lambda: run_transaction(self._store, lambda tx: self._apply(tx, envelope, message)),
            )
        except _Interrupted:
            raise
        except DomainError as exc:
            if isinstance(exc, Conflict):  # a concurrent change won: the message may apply later
                await self._settle(incoming, self._retry, exc)
            else:
                await self._settle(incoming, self._dead_letter, exc, self._attempts(incoming) + 1)
            return
        except Exception as exc:  # noqa: BLE001 - a handler bug, or a fault we cannot name
            await self._settle(incoming, self._retry, exc)
            return
        await self._settle(incoming, self._ack)
        self._settled(envelope, first)

    async def _until_done(
        self, incoming: Delivery, work: Callable[[], Awaitable[T]], *, contention: bool = True
    ) -> T:
        """`work()`, done again after each fault that passes (chassis.faults: the
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
                    raise _ChannelGone from exc
                log.warning(
                    WAITING[fault],
                    fault=fault,
                    queue=self.name,
                    type=_type_of(incoming),
                    event_id=incoming.header.properties.message_id,
                    wait_s=wait_s,
                    waited_s=round(waited_s, 3),
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._ledger.record(_type_of(incoming), "waited", queue=self._counted_as)
                waited_s += wait_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._stopping.wait()
                    raise _Stopping from exc
                wait_s = min(wait_s * 2, LONGEST_WAIT_S)

    async def _settle(
        self, incoming: Delivery, settle: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Settles a delivery (acks it, or sends it on and acks it), waiting out infrastructure
        faults. If it cannot be settled for another reason (a copy the broker refuses), the
        delivery is rejected: the broker dead-letters it. Never left unacked behind a later ack."""
        try:
            await self._until_done(incoming, lambda: settle(incoming, *args))
        except _Interrupted:
            raise
        except Exception:
            log.exception(
                "could not settle a message; the broker dead-letters it",
                queue=self.name,
                event_id=incoming.header.properties.message_id,
            )
            await self._until_done(incoming, lambda: self._reject(incoming))

    async def _ack(self, incoming: Delivery, multiple: bool = False) -> None:
        """Acks on the channel the message came on (with `multiple`, every delivery of the
        batch up to it: only ever when all of them are settled)."""
        assert incoming.delivery_tag is not None
        await incoming.channel.basic_ack(incoming.delivery_tag, multiple=multiple)
        if multiple:
            self._unsettled.clear()
        else:
            self._unsettled.pop(incoming.delivery_tag, None)

    async def _reject(self, incoming: Delivery) -> None:
        assert incoming.delivery_tag is not None
        await incoming.channel.basic_reject(incoming.delivery_tag, requeue=False)
        self._unsettled.pop(incoming.delivery_tag, None)
        self._ledger.record(_type_of(incoming), "dead_lettered", queue=self._counted_as)

    async def _give_back(self) -> None:
        """Returns every unsettled delivery of the batch to the broker, to be delivered again."""
        for tag, incoming in list(self._unsettled.items()):
            try:
                await incoming.channel.basic_nack(tag, requeue=True)
            except Exception:  # noqa: BLE001 - most likely the channel is gone: they come again
                log.warning("could not give a message back; it comes again", queue=self.name)
                # Should the channel live on, no ack on it may cover more than one delivery.
                self._tainted.add(id(incoming.channel))
                return
            self._unsettled.pop(tag, None)

    def _settled(self, envelope: Envelope, first_time: bool) -> None:
        outcome = "processed" if first_time else "duplicate"
        self._ledger.record(envelope.type, outcome, queue=self._counted_as)
        # Named here, not taken from the context: a batch is settled after all its messages.
        log.info(
            "message handled" if first_time else "duplicate absorbed",
            queue=self.name,
            type=envelope.type,
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            trace_id=envelope.traceparent.split("-")[1] if envelope.traceparent else "",
        )

    @staticmethod
    def _attempts(incoming: Delivery) -> int:
        value = (incoming.header.properties.headers or {}).get(ATTEMPTS, 0)
        return int(value) if isinstance(value, int | str) else 0

    @staticmethod
    def _origin(incoming: Delivery) -> dict[str, Any]:
        """Where the message was first published (retries arrive from the default exchange)."""
        headers = incoming.header.properties.headers or {}
        return {
            ORIGINAL_EXCHANGE: headers.get(ORIGINAL_EXCHANGE, incoming.exchange or ""),
            ORIGINAL_ROUTING_KEY: headers.get(ORIGINAL_ROUTING_KEY, incoming.routing_key or ""),
        }

    async def _retry(self, incoming: Delivery, error: Exception) -> None:
        attempts = self._attempts(incoming) + 1
        delays = self.subscription.retry_delays_s
        if attempts > len(delays):
            await self._dead_letter(incoming, error, attempts=attempts)
            return
        event_id = incoming.header.properties.message_id or ""
        log.warning(
            "handler failed; retrying",
            type=_type_of(incoming),
            event_id=event_id,
            attempt=attempts,
            delay_s=delays[attempts - 1],
            error=f"{type(error).__name__}: {error}",
        )
        retry = _copy(
            incoming,
            {ATTEMPTS: attempts, "x-last-error": f"{type(error).__name__}: {error}"[:1000],
             **self._origin(incoming)},
        )  # fmt: skip
        attributes = {"ordermesh.retry.attempt": attempts, "error.type": type(error).__name__}
        with self._span("retry", _traceparent_of(incoming), event_id, **attributes):
            await self._broker.send(retry, routing_key=self.subscription.retry_queue(attempts - 1))
        await self._ack(incoming)
        self._ledger.record(_type_of(incoming), "retried", queue=self._counted_as)

    async def _dead_letter(self, incoming: Delivery, error: Exception, attempts: int) -> None:
        event_id = incoming.header.properties.message_id or ""
        log.error(
            "message dead-lettered",
            type=_type_of(incoming),
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
                "x-consumer": self.name,
                "x-failed-at": datetime.now(UTC).isoformat(),
                **self._origin(incoming),
            },
        )
        attributes = {"ordermesh.attempts": attempts, "error.type": type(error).__name__}
        with self._span("dead-letter", _traceparent_of(incoming), event_id, **attributes):
            await self._broker.send(dead, routing_key=self.subscription.dead_letter_queue)
        await self._ack(incoming)
        self._ledger.record(_type_of(incoming), "dead_lettered", queue=self._counted_as)
