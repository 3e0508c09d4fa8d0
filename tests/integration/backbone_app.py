"""A producer or a consumer of the event backbone in a process of its own, for the chaos tests.

    python -m tests.integration.backbone_app produce --store URL --amqp URL[,URL...] --total N
    python -m tests.integration.backbone_app consume --store URL --amqp URL[,URL...]

The producer commits StockAdjusted events through the outbox (use case -> transaction ->
outbox -> relay -> broker) until its outbox holds `--total` events, continuing where it stopped
if it was killed, and exits once all are confirmed; several producers may share a store (on
PostgreSQL), as the instances of a service do, and then one relay at a time publishes (the
lease, `--instance` its owner). The consumer applies each event to a per-product total in its
own store, with its inbox, until it is stopped, and records the order in which it applied each
product's events (`applied`: the product's total after the event); it records which events
reached it again after a delivery that was never acked (the quorum queue's `x-delivery-count`:
a kill interrupted them). Everything the chaos tests reconcile is durable:
the producer's outbox and the consumer's inbox, totals and redeliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time

from inventory.v1 import events_pb2
from ordermesh import logging as chassis_logging
from ordermesh.broker import Broker
from ordermesh.consumer import Consumer
from ordermesh.events import Envelope, Outgoing, amqp_properties, outgoing
from ordermesh.outbox import OutboxRelay
from ordermesh.store import Collection, StoreUnavailable, Transaction, open_store
from ordermesh.topology import Subscription

KEYS = 64
SUBSCRIPTION = Subscription(
    service="chaos",
    purpose="stock",
    types=[events_pb2.StockAdjusted],
    retry_delays_s=(0.5, 1.0, 2.0),
    prefetch=64,
)


class UnconfirmedBroker(Broker):
    """The negative control: publishes without waiting for the broker to confirm anything.

    Never used by services; it exists to prove the chaos harness can see a loss.
    """

    async def connect(self, *, timeout_s: float = 30.0) -> None:
        await super().connect(timeout_s=timeout_s)
        self._unconfirmed = await self.connection.channel(publisher_confirms=False)

    async def publish(self, message: Outgoing, *, timeout_s: float = 10.0) -> None:
        channel = await self._unconfirmed.get_underlay_channel()
        await channel.basic_publish(
            message.payload,
            exchange=message.route.exchange,
            routing_key=message.route.routing_key,
            properties=amqp_properties(message.envelope),
        )


def event(seq: int) -> tuple[events_pb2.StockAdjusted, str]:
    product = f"p-{seq % KEYS}"
    return events_pb2.StockAdjusted(product_id=product, delta=1, available_stock=seq), product


async def produce(args: argparse.Namespace) -> None:
    store = open_store(args.store, database="producer")
    await store.open()
    broker = (UnconfirmedBroker if args.no_confirms else Broker)(
        args.amqp, name=args.instance, quorum_size=args.quorum_size
    )
    await broker.connect()
    relay = OutboxRelay(
        store, broker, owner=args.instance, poll_interval_s=0.2, lease_ttl_s=args.lease_ttl
    )
    # A delayed relay leaves committed events unpublished for a while: a kill then lands
    # between commit and publish.
    asyncio.get_running_loop().call_later(args.relay_delay, relay.start)
    pending, sent = await store.count_outbox()
    committed = pending + sent
    started = time.monotonic()
    while committed < args.total:
        batch = min(args.batch, args.total - committed)
        try:
            async with store.transaction() as tx:
                for seq in range(committed, committed + batch):
                    message, key = event(seq)
                    tx.publish(outgoing(message, producer="producer"), key=key)
        except StoreUnavailable:  # as a client whose call failed would: again, a little later
            await asyncio.sleep(0.2)
            with contextlib.suppress(StoreUnavailable):  # the commit may have happened
                committed = sum(await store.count_outbox())
            continue
        committed += batch
        print(f"committed {committed}", flush=True)
        if args.rate:
            ahead_s = committed / args.rate - (time.monotonic() - started)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
    await asyncio.sleep(max(0.0, args.relay_delay - (time.monotonic() - started)))
    while True:
        with contextlib.suppress(StoreUnavailable):
            if not (await store.count_outbox())[0]:
                break
        await asyncio.sleep(0.1)
    print("all confirmed", flush=True)
    await relay.stop()
    await broker.close()
    await store.close()


async def apply_adjustment(
    message: events_pb2.StockAdjusted, envelope: Envelope, tx: Transaction
) -> None:
    if envelope.headers.get("x-delivery-count") and not await tx.get(
        "redelivered", envelope.event_id
    ):
        await tx.insert("redelivered", envelope.event_id, {})
    total = await tx.get("totals", message.product_id)
    if total is None:
        total = await tx.insert("totals", message.product_id, {"total": message.delta})
    else:
        total = await tx.update("totals", {**total, "total": total["total"] + message.delta})
    await tx.insert(
        "applied", envelope.event_id, {"product": message.product_id, "at": total["total"]}
    )


async def consume(args: argparse.Namespace) -> None:
    chassis_logging.configure(service="chaos-consumer", instance=args.instance)
    store = open_store(args.store, database="consumer")
    await store.open([Collection("totals"), Collection("redelivered"), Collection("applied")])
    broker = Broker(args.amqp, name=args.instance, quorum_size=args.quorum_size)
    await broker.connect()
    consumer = Consumer(
        SUBSCRIPTION,
        {events_pb2.StockAdjusted: apply_adjustment},  # type: ignore[dict-item]
        store=store,
        broker=broker,
    )
    await consumer.start()
    print(f"consuming pid={os.getpid()}", flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await consumer.stop()
    await broker.close()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["produce", "consume"])
    parser.add_argument("--store", required=True, help="a store URL (sqlite:///..., ...)")
    parser.add_argument("--instance", default="app", help="this instance's name")
    parser.add_argument("--lease-ttl", type=float, default=10.0, help="the relay's lease, s")
    parser.add_argument("--amqp", required=True, help="a node's URL, or a cluster's joined by ,")
    parser.add_argument("--quorum-size", type=int, default=0, help="quorum queues' members")
    parser.add_argument("--total", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 is unbounded")
    parser.add_argument("--relay-delay", type=float, default=0.0)
    parser.add_argument("--no-confirms", action="store_true")
    args = parser.parse_args()
    asyncio.run(produce(args) if args.mode == "produce" else consume(args))


if __name__ == "__main__":
    main()
