"""`make bench-events`: publish -> processed latency and throughput of seven event paths.

All run in one run, on one private RabbitMQ node, with the same guarantees: persistent
messages, publisher confirms, durable quorum queues, manual acks after the handler.

    bare        aio-pika: publish with confirms; consume, handle, ack
    faststream  FastStream's RabbitBroker publisher and subscriber (ack after the handler)
    chassis     our full path: a use case commits state + event (SQLite) -> outbox relay ->
                broker -> consumer -> handler + inbox commit (SQLite) -> ack
    chassis-pg  the same path with both stores on PostgreSQL (a private server, one database
                each, `fsync=off`: commits written to the OS, not flushed to disk, before they
                are acknowledged: a killed server loses nothing, a crashed machine could)
    chassis-pg-durable  the same on a server that flushes every commit to disk before it is
                acknowledged (fsync on: PostgreSQL's defaults, as a production server runs)
    chassis-traced-default  the chassis path traced as a service traces by default: every use
                case in a span, one new trace in ten sampled (parent-based, 10 %), its publish
                and process spans exported over OTLP to a real collector on loopback (rotel);
                measured after the untraced paths, as the SDK, once installed, stays for the
                process
    chassis-traced  the same with every trace sampled (each use case's span the child of a
                caller's sampled span, which the parent-based sampler follows)

For each: p50/p95/p99 latency from the start of the send (for chassis, the start of the use
case's transaction) to the end of processing (after the ack), at a fixed rate; and the
throughput of a burst with 256 sends in flight (the median of three bursts). Ends with one
RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
from faststream import AckPolicy
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue
from inventory.v1 import events_pb2
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from ordermesh import logging as chassis_logging
from ordermesh import telemetry
from ordermesh.broker import Broker
from ordermesh.consumer import Consumer
from ordermesh.events import Envelope, outgoing
from ordermesh.garbage import keep_startup_objects
from ordermesh.outbox import OutboxRelay
from ordermesh.store import Collection, Store, Transaction, run_transaction
from ordermesh.store.postgres import PostgresStore
from ordermesh.store.sqlite import SqliteStore
from ordermesh.topology import Subscription

from bench.machine import add_log_level, reference_ms
from harness import PrivateRabbitMQ, charts
from harness.postgres import PrivatePostgres
from harness.rotel import PrivateRotel

IN_FLIGHT = 256
QUORUM = {"x-queue-type": "quorum"}


class EventPath:
    """One event path: `send(seq)` starts an event; `done[seq]` is when it was processed."""

    name = ""

    def __init__(self) -> None:
        self.done: dict[int, float] = {}
        self.expected = 0
        self.finished = asyncio.Event()

    def processed(self, seq: int) -> None:
        self.done[seq] = time.perf_counter()
        if len(self.done) >= self.expected:
            self.finished.set()

    async def start(self, url: str) -> None: ...

    async def send(self, seq: int) -> None: ...

    async def stop(self) -> None: ...

    def reset(self, expected: int) -> None:
        self.done = {}
        self.expected = expected
        self.finished = asyncio.Event()


def body(seq: int) -> bytes:
    return events_pb2.StockAdjusted(
        product_id=f"p-{seq % 1000}", delta=1, available_stock=seq
    ).SerializeToString()


class Bare(EventPath):
    name = "bare"

    async def start(self, url: str) -> None:
        self.queue_name = f"bench.bare.{uuid.uuid4().hex[:8]}"
        self.connection = await aio_pika.connect(url)
        self.publisher = await self.connection.channel(publisher_confirms=True)
        consumer = await self.connection.channel()
        await consumer.set_qos(prefetch_count=IN_FLIGHT)
        queue = await consumer.declare_queue(self.queue_name, durable=True, arguments=QUORUM)
        await queue.consume(self.on_message)

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seq = events_pb2.StockAdjusted.FromString(message.body).available_stock
        await message.ack()
        self.processed(seq)

    async def send(self, seq: int) -> None:
        await self.publisher.default_exchange.publish(
            aio_pika.Message(body(seq), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=self.queue_name,
            mandatory=True,
        )

    async def stop(self) -> None:
        await self.connection.close()


class FastStream(EventPath):
    name = "faststream"

    async def start(self, url: str) -> None:
        self.queue = RabbitQueue(
            f"bench.faststream.{uuid.uuid4().hex[:8]}", durable=True, queue_type=QueueType.QUORUM
        )
        self.broker = RabbitBroker(
            url, logger=None, default_channel=Channel(publisher_confirms=True)
        )

        @self.broker.subscriber(
            self.queue, ack_policy=AckPolicy.ACK, channel=Channel(prefetch_count=IN_FLIGHT)
        )
        async def handle(raw: bytes) -> None:
            self.processed(events_pb2.StockAdjusted.FromString(raw).available_stock)

        await self.broker.start()

    async def send(self, seq: int) -> None:
        await self.broker.publish(body(seq), queue=self.queue, persist=True, mandatory=True)

    async def stop(self) -> None:
        await self.broker.stop()


class Chassis(EventPath):
    name = "chassis"

    def stores(self) -> tuple[Store, Store]:
        directory = Path(tempfile.mkdtemp(prefix="bench-chassis-"))
        return SqliteStore(directory / "producer.db"), SqliteStore(directory / "consumer.db")

    async def start(self, url: str) -> None:
        self.producer_store, self.consumer_store = self.stores()
        await self.producer_store.open([Collection("products")])
        await self.consumer_store.open([Collection("totals")])
        self.broker = Broker(url, name="bench")
        await self.broker.connect()
        self.relay = OutboxRelay(self.producer_store, self.broker, owner="bench")
        subscription = Subscription(
            service="bench", purpose=f"chassis-{uuid.uuid4().hex[:8]}",
            types=[events_pb2.StockAdjusted], prefetch=IN_FLIGHT,
        )  # fmt: skip
        bench = self

        self.seq_of: dict[str, int] = {}

        class Timed(Consumer):
            """Marks each message processed once its settlement says so (committed, acked)."""

            def __init__(self, *args: Any, **kwargs: Any):
                super().__init__(*args, **kwargs)
                settled = self._settlement.settled

                def timed(envelope: Envelope, first_time: bool) -> None:
                    settled(envelope, first_time)
                    bench.processed(bench.seq_of.pop(envelope.event_id))

                self._settlement.settled = timed  # type: ignore[method-assign]

        self.consumer = Timed(
            subscription, {events_pb2.StockAdjusted: self.apply}, store=self.consumer_store,
            broker=self.broker,
        )  # fmt: skip
        await self.consumer.start()
        self.relay.start()

    @staticmethod
    async def apply(message: events_pb2.StockAdjusted, _: object, tx: Transaction) -> None:
        total = await tx.get("totals", message.product_id)
        if total is None:
            await tx.insert("totals", message.product_id, {"total": message.delta})
        else:
            await tx.update("totals", {**total, "total": total["total"] + message.delta})

    async def send(self, seq: int) -> None:
        """The use case: a state change and its event, committed together."""
        event = events_pb2.StockAdjusted(product_id=f"p-{seq % 1000}", delta=1, available_stock=seq)
        message = outgoing(event, producer="bench")
        self.seq_of[message.envelope.event_id] = seq

        async def commit(tx: Transaction) -> None:
            await tx.insert("products", f"{seq}-{uuid.uuid4().hex[:6]}", {"seq": seq})
            tx.publish(message, key=event.product_id)

        # As the services' use cases do: again after a concurrent commit won (on PostgreSQL,
        # 256 at once wait for the outbox's order lock, whose timeout is a conflict).
        await run_transaction(self.producer_store, commit)

    async def stop(self) -> None:
        await self.relay.stop()
        await self.consumer.stop()
        await self.broker.close()
        await self.producer_store.close()
        await self.consumer_store.close()


class ChassisPostgres(Chassis):
    name = "chassis-pg"
    server: PrivatePostgres | None = None  # started by main()

    def stores(self) -> tuple[Store, Store]:
        assert self.server is not None
        run = uuid.uuid4().hex[:8]
        return (
            PostgresStore(self.server.database(f"producer_{run}")),
            PostgresStore(self.server.database(f"consumer_{run}")),
        )


class ChassisPostgresDurable(ChassisPostgres):
    name = "chassis-pg-durable"
    server: PrivatePostgres | None = None  # started by main(), durable


class ChassisTracedDefault(Chassis):
    name = "chassis-traced-default"
    collector: PrivateRotel | None = None  # started by main()

    async def start(self, url: str) -> None:
        assert self.collector is not None
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.collector.endpoint
        os.environ["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
        os.environ.pop("OTEL_TRACES_SAMPLER", None)  # the services' default
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            assert telemetry.configure(service="bench", instance="bench-1")
        await super().start(url)

    def caller(self) -> Context | None:
        """The context of the caller whose trace a use case continues (None: it starts one)."""
        return None

    async def send(self, seq: int) -> None:
        with telemetry.tracer.start_as_current_span(
            "adjust stock", context=self.caller(), kind=telemetry.SpanKind.SERVER
        ):
            await super().send(seq)


class ChassisTraced(ChassisTracedDefault):
    name = "chassis-traced"

    def caller(self) -> Context | None:
        """A new caller's sampled span for each use case: every trace sampled."""
        caller = SpanContext(
            random.getrandbits(128) or 1, random.getrandbits(64) or 1, is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )  # fmt: skip
        return trace.set_span_in_context(NonRecordingSpan(caller))


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(p * 10) - 1]


async def latency(path: EventPath, *, rate: float, count: int) -> list[float]:
    path.reset(count)
    started: dict[int, float] = {}
    tasks = []
    t0 = time.perf_counter()
    for seq in range(count):
        delay = t0 + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        started[seq] = time.perf_counter()
        tasks.append(asyncio.create_task(path.send(seq)))
    await asyncio.gather(*tasks)
    await asyncio.wait_for(path.finished.wait(), 60)
    return [(path.done[s] - started[s]) * 1000 for s in range(count)]


async def throughput(path: EventPath, *, count: int) -> float:
    path.reset(count)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(seq: int) -> None:
        async with slots:
            await path.send(seq)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(seq) for seq in range(count)))
    await asyncio.wait_for(path.finished.wait(), 120)
    return count / (max(path.done.values()) - t0)


async def measure(
    url: str, make: Callable[[], EventPath], *, rate: float, count: int, burst: int
) -> tuple[list[float], float]:
    path = make()
    await path.start(url)
    try:
        await latency(path, rate=rate, count=min(200, count))  # warm up
        latencies = await latency(path, rate=rate, count=count)
        rate_s = statistics.median([await throughput(path, count=burst) for _ in range(3)])
    finally:
        await path.stop()
    return latencies, rate_s


async def main(args: argparse.Namespace) -> None:
    broker = PrivateRabbitMQ(Path(tempfile.mkdtemp(prefix="bench-rabbitmq-")))
    await asyncio.to_thread(broker.start)
    postgres = PrivatePostgres(Path(tempfile.mkdtemp(prefix="bench-postgres-")))
    await asyncio.to_thread(postgres.start)
    ChassisPostgres.server = postgres
    durable = PrivatePostgres(Path(tempfile.mkdtemp(prefix="bench-postgres-")), durable=True)
    await asyncio.to_thread(durable.start)
    ChassisPostgresDurable.server = durable
    collector = PrivateRotel(Path(tempfile.mkdtemp(prefix="bench-rotel-")), describe=False)
    await asyncio.to_thread(collector.start)
    ChassisTracedDefault.collector = collector
    results: dict[str, tuple[list[float], float]] = {}
    try:
        paths = (
            Bare, FastStream, Chassis, ChassisPostgres, ChassisPostgresDurable,
            ChassisTracedDefault, ChassisTraced,
        )  # fmt: skip
        for make in paths:
            results[make.name] = await measure(
                broker.url, make, rate=args.rate, count=args.count, burst=args.burst
            )
            lat, rate_s = results[make.name]
            print(
                f"{make.name:<18} at {args.rate:.0f}/s: p50 {percentile(lat, 50):6.2f} ms  "
                f"p95 {percentile(lat, 95):6.2f} ms  p99 {percentile(lat, 99):6.2f} ms   "
                f"bursts of {args.burst}: {rate_s:7.0f} msg/s",
                flush=True,
            )
    finally:
        await asyncio.to_thread(broker.remove)
        await asyncio.to_thread(postgres.remove)
        await asyncio.to_thread(durable.remove)
        await asyncio.to_thread(collector.stop)
    picture = charts.percentiles(
        "bench-events.png",
        {name: lat for name, (lat, _) in results.items()},
        title=f"Publish to processed, per path, at {args.rate:.0f} messages/s",
    )
    print(f"picture: {picture}")
    p99 = {name: percentile(lat, 99) for name, (lat, _) in results.items()}
    rates = {name: rate_s for name, (_, rate_s) in results.items()}
    print(
        f"RESULT ref_ms={reference_ms():.0f} "
        f"chassis_p99_ms={p99['chassis']:.2f} bare_p99_ms={p99['bare']:.2f} "
        f"faststream_p99_ms={p99['faststream']:.2f} chassis_pg_p99_ms={p99['chassis-pg']:.2f} "
        f"chassis_msgs_s={rates['chassis']:.0f} bare_msgs_s={rates['bare']:.0f} "
        f"faststream_msgs_s={rates['faststream']:.0f} chassis_pg_msgs_s={rates['chassis-pg']:.0f} "
        f"chassis_pg_durable_p99_ms={p99['chassis-pg-durable']:.2f} "
        f"chassis_pg_durable_msgs_s={rates['chassis-pg-durable']:.0f} "
        f"chassis_traced_p99_ms={p99['chassis-traced']:.2f} "
        f"chassis_traced_msgs_s={rates['chassis-traced']:.0f} "
        f"chassis_traced_default_p99_ms={p99['chassis-traced-default']:.2f} "
        f"chassis_traced_default_msgs_s={rates['chassis-traced-default']:.0f}"
    )
    print(
        f"ratios: runtime/src/ordermesh/bare throughput {rates['chassis'] / rates['bare']:.2f}, "
        f"runtime/src/ordermesh/faststream {rates['chassis'] / rates['faststream']:.2f}, "
        f"chassis-pg/chassis {rates['chassis-pg'] / rates['chassis']:.2f}, "
        f"chassis-pg-durable/chassis {rates['chassis-pg-durable'] / rates['chassis']:.2f}, "
        f"chassis-traced/chassis {rates['chassis-traced'] / rates['chassis']:.2f}, "
        f"chassis-traced-default/chassis "
        f"{rates['chassis-traced-default'] / rates['chassis']:.2f}, "
        f"chassis p99/bare p99 at {args.rate:.0f}/s {p99['chassis'] / p99['bare']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="events/s for the latency run")
    parser.add_argument("--count", type=int, default=3000, help="events in the latency run")
    parser.add_argument("--burst", type=int, default=10000, help="events in the throughput run")
    add_log_level(parser)
    args = parser.parse_args()
    # The chassis logs a line for each message it handles at INFO, as the services do: written
    # to a file, as a service's output is under `make up`, so that the bench's own stays read.
    # Left open until the process ends: the tracing SDK may log while it shuts down.
    log_file = Path(tempfile.mkdtemp(prefix="bench-events-")) / "ordermesh.log"
    lines = log_file.open("w")
    chassis_logging.configure(
        service="bench", instance="bench-1", level=args.log_level, stream=lines
    )
    # What is imported is kept out of the garbage collector's full passes, as a service keeps
    # what it built when it starts serving (ordermesh.grpc): every path of this process alike.
    keep_startup_objects()
    asyncio.run(main(args))
    print(f"the chassis's log lines: {log_file}")
