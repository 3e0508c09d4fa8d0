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

An infrastructure fault (ordermesh.faults: the store locked past its busy timeout, its disk
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

A fault switch (ordermesh.switches, `handler-fails`) on for a message keeps its handler from
running: the delivery fails with InjectedFault, retried and dead-lettered as a bug would be.

Dead-letter headers: `x-error-class`, `x-error-message`, `x-attempts`, `x-consumer`, `x-instance`,
`x-failed-at`, `x-original-exchange`, `x-original-routing-key`. The settling side (acks,
retries, dead letters, rejections, the waits for faults that pass) is ordermesh.settlement; each
outcome is counted in the ledger under its `ordermesh.ledger.Stage`.

Deliveries are taken from aio-pika's channel at the aiormq level (one task per delivery instead
of two, and no `IncomingMessage` built per delivery; measured: bench-events): aio-pika still
declares the queues and restores them after a reconnection, and the consumer then subscribes
again on the new channel; if the broker cancels the subscription (its queue deleted), it
declares the subscription again and resubscribes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import aio_pika.abc
from pamqp.commands import Basic

from ordermesh.broker import Broker
from ordermesh.correlation import causation_id, correlation_id
from ordermesh.errors import Conflict, DomainError
from ordermesh.events import Envelope, Message, TypeRegistry, Undecodable
from ordermesh.ledger import Ledger, Stage
from ordermesh.logging import get_logger
from ordermesh.settlement import (
    ChannelGone,
    Delivery,
    Interrupted,
    Settlement,
    Stopping,
    consumer_span,
)
from ordermesh.store import Store, Transaction, run_transaction
from ordermesh.switches import HANDLER_FAILS, Switches
from ordermesh.topology import Subscription, declare_subscription

__all__ = ["Consumer", "Handler"]

log = get_logger(__name__)

Handler = Callable[[Message, Envelope, Transaction], Awaitable[None]]
# Most messages handled in one transaction (and acked with one frame).
BATCH = 64
RESUBSCRIBE_INTERVAL_S = 1.0


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
        switches: Switches | None = None,
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
        self.name = subscription.queue(instance)
        # None: every fault switch off. They see a per-instance queue by its subscription's name.
        self._switches = switches or Switches()
        self._switched_queue = subscription.queue()
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None
        self._resubscribing: asyncio.Task[None] | None = None
        # Deliveries not yet handled, in arrival order, and the task that handles them.
        self._waiting: deque[Delivery] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._settlement = Settlement(
            subscription,
            broker=broker,
            ledger=ledger or Ledger(),
            name=self.name,
            stopping=self._stopping,
            instance=instance,
        )

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
        self._settlement.count(incoming, Stage.DELIVERED)
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
                settlement = self._settlement
                settlement.unsettled = {d.delivery_tag or 0: d for d in batch}
                try:
                    await self._handle_batch(batch)
                except ChannelGone:
                    log.warning(
                        "channel closed while settling; the messages come again",
                        queue=self.name,
                        count=len(settlement.unsettled),
                    )
                except Stopping:
                    return  # what is held stays unacked; the broker delivers it again
                except Exception:  # a bug here must not lose what the batch held
                    log.exception(
                        "could not handle messages; they are given back to the broker",
                        queue=self.name,
                        count=len(settlement.unsettled),
                    )
                    await settlement.give_back()
        finally:
            self._drainer = None

    async def _handle_batch(self, batch: list[Delivery]) -> None:
        """All of a batch in one transaction; if any handler fails, each message on its own."""
        settlement = self._settlement
        decoded = []
        for incoming in batch:
            try:
                envelope, message = self._types.decode(incoming)
            except Undecodable as exc:
                await settlement.settle(incoming, settlement.dead_letter, exc, 0)
                continue
            decoded.append((incoming, envelope, message))
        if not decoded:
            return
        if len(decoded) > 1:
            last = decoded[-1][0]
            try:
                # Contention is not waited out here: one by one, the messages that meet
                # none commit, and each that does waits on its own.
                firsts = await settlement.until_done(
                    last,
                    lambda: run_transaction(self._store, lambda tx: self._apply_all(tx, decoded)),
                    contention=False,
                )
            except Interrupted:
                raise
            except Exception:  # noqa: BLE001 - a message's own fault, or contention: one by one
                pass
            else:
                await settlement.ack_batch([incoming for incoming, _, _ in decoded])
                for (_, envelope, _), first in zip(decoded, firsts, strict=True):
                    settlement.settled(envelope, first)
                return
        for item in decoded:
            await self._handle_one(*item)

    async def _apply(self, tx: Transaction, envelope: Envelope, message: Message) -> bool:
        """Runs the handler unless the inbox has seen the message; True if it ran."""
        correlation_id.set(envelope.correlation_id)
        causation_id.set(envelope.event_id)
        with consumer_span(self.name, "process", envelope.traceparent, envelope.event_id) as span:
            if not await tx.first_time(self.name, envelope.event_id):
                span.set_attribute("ordermesh.message.duplicate", True)
                return False
            self._switches.inject(
                HANDLER_FAILS,
                service=self.subscription.service,
                queue=self._switched_queue,
                type=envelope.type,
            )
            await self._handlers[envelope.type](message, envelope, tx)
            return True

    async def _apply_all(
        self,
        tx: Transaction,
        decoded: list[tuple[Delivery, Envelope, Message]],
    ) -> list[bool]:
        return [await self._apply(tx, envelope, message) for _, envelope, message in decoded]

    async def _handle_one(self, incoming: Delivery, envelope: Envelope, message: Message) -> None:
        settlement = self._settlement
        try:
            first = await settlement.until_done(
                incoming,
                lambda: run_transaction(self._store, lambda tx: self._apply(tx, envelope, message)),
            )
        except Interrupted:
            raise
        except DomainError as exc:
            if isinstance(exc, Conflict):  # a concurrent change won: the message may apply later
                await settlement.settle(incoming, settlement.retry, exc)
            else:
                await settlement.settle(incoming, settlement.dead_letter, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a handler bug, or a fault we cannot name
            await settlement.settle(incoming, settlement.retry, exc)
            return
        await settlement.settle(incoming, settlement.ack)
        settlement.settled(envelope, first)
