"""`make bench-saga`: latency from PlaceOrder to APPROVED, and sustained orders per second.

Every service of the catalogue runs as real processes (`harness.system`, the gateway's auth and
rate-limit services included), one instance each, behind the gateway (Envoy and its agent), on
one private RabbitMQ node, at the log level the services ship with (INFO; `--log-level`): first
each with its SQLite store, as `make up` runs them, then each with its database on one private
PostgreSQL server (the networked store), then with SQLite again and every service tracing as it
does by default (one new trace in ten sampled), then with every trace sampled, exporting over
OTLP to a real collector on loopback (rotel, describing nothing), in the same run. On each
system orders are placed over gRPC by this process, by 200 customers with a token each: first
straight to the order service (the baseline), then through the gateway (the headline: Envoy, its
token check, the per-user write limit a deployment has, 60 a minute, by the rate-limit service);
an order counts as approved when its OrderApproved event arrives on a queue this process binds
to `order.events` (so the latency includes the event's publication).

- latency: orders placed at a fixed rate (default 100/s) for a fixed time; p50/p95/p99 of
  PlaceOrder start -> OrderApproved received;
- throughput: three bursts of orders with a fixed number in flight; orders approved per second
  (the median).

Ends with `RESULT ref_ms=... log_level=... sqlite_gateway_p99_ms=... sqlite_gateway_orders_s=...
sqlite_direct_p99_ms=... sqlite_direct_orders_s=...` and the same for `pg_`, `traced_default_`
and `traced_` (`ref_ms`: see bench/machine.py), then the ratios: gateway/direct,
PostgreSQL/SQLite, traced/untraced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import grpc
from order.v1 import events_pb2
from ordermesh.gateway.ratelimit.config import RateLimitSettings

from bench.events import Bare, percentile
from bench.events import throughput as events_throughput
from bench.machine import add_log_level, cpu_s, reference_ms
from bench.systems import Running, running_system
from harness import PrivateRabbitMQ
from harness.rotel import PrivateRotel
from harness.shop import Session, Shop

RETRIES = 5
RETRYABLE = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}


class Approvals:
    """When each order's OrderApproved arrived, from a queue bound to the order events."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self, url: str) -> None:
        self._connection = await aio_pika.connect_robust(url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(f"bench-approvals-{uuid.uuid4().hex}", exclusive=True)
        await queue.bind("order.events", routing_key="order.approved")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        order_id = events_pb2.OrderApproved.FromString(message.body).order_id
        self.at[order_id] = now
        future = self.waiting.pop(order_id, None)
        if future is not None and not future.done():
            future.set_result(now)

    async def approved(self, order_id: str, timeout_s: float = 60.0) -> float:
        if order_id in self.at:
            return self.at[order_id]
        future = self.waiting.setdefault(order_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(future, timeout_s)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def place_and_wait(
    shop: Shop, approvals: Approvals, session: Session, product_id: str
) -> float:
    """Seconds from placing an order to its approval; an answer worth retrying (ABORTED,
    UNAVAILABLE: a saturated store) is retried as a client would, with the same key, and the
    wait counts."""
    started = time.perf_counter()
    key = str(uuid.uuid4())
    for attempt in range(RETRIES + 1):
        try:
            order = await shop.place(session, [(product_id, 1)], key=key)
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or attempt == RETRIES:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    return (await approvals.approved(order.order_id)) - started


@dataclass
class Paced:
    """Orders placed at a fixed rate: each one's latency in ms (a failed one's counts the time
    it took to fail: past the client's deadline, the system did not sustain the rate), and how
    many failed."""

    latencies_ms: list[float]
    failed: int


async def at_rate(
    shop: Shop,
    approvals: Approvals,
    users: list[Session],
    products: Sequence[str],
    *,
    rate: float,
    seconds: float,
) -> Paced:
    """Order n is user n's (modulo) and buys product n (modulo)."""

    async def timed(n: int) -> tuple[float, bool]:
        begun = time.perf_counter()
        user, product_id = users[n % len(users)], products[n % len(products)]
        try:
            return await place_and_wait(shop, approvals, user, product_id) * 1000, False
        except (grpc.aio.AioRpcError, TimeoutError):
            return (time.perf_counter() - begun) * 1000, True

    count = int(rate * seconds)
    tasks = []
    started = time.perf_counter()
    for n in range(count):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(n)))
    outcomes = await asyncio.gather(*tasks)
    return Paced([ms for ms, _ in outcomes], sum(failed for _, failed in outcomes))


async def burst(
    shop: Shop,
    approvals: Approvals,
    users: list[Session],
    products: Sequence[str],
    *,
    total: int,
    in_flight: int,
) -> tuple[float, int]:
    """`total` orders, `in_flight` at a time: (approved orders/s, how many failed). An order
    that fails (its answer not worth retrying, or still failing after the retries: a circuit
    breaker failing fast on a saturated machine) counts as failed, not as approved."""
    slots = asyncio.Semaphore(in_flight)

    async def one(n: int) -> bool:
        async with slots:
            user, product_id = users[n % len(users)], products[n % len(products)]
            try:
                await place_and_wait(shop, approvals, user, product_id)
            except (grpc.aio.AioRpcError, TimeoutError):
                return False
            return True

    started = time.perf_counter()
    approved = sum(await asyncio.gather(*(one(n) for n in range(total))))
    return approved / (time.perf_counter() - started), total - approved


# The messages an approved order sends through the broker (OrderPlaced, ReserveStock,
# StockReserved, ReserveCredit, CreditReserved, OrderApproved, NotificationSent).
EVENTS_PER_ORDER = 7
BARE_EVENTS = 7000


async def bare_event_cpu_ms(broker: PrivateRabbitMQ) -> float:
    """The CPU one event costs on the bare path (bench.events' aio-pika publisher and consumer,
    persistent, confirmed, acked, on a quorum queue): this process and the broker, per event,
    over a burst of BARE_EVENTS after a warm-up."""
    path = Bare()
    await path.start(broker.url)
    try:
        await events_throughput(path, count=1000)
        pids = [os.getpid(), broker.process.pid]
        before = cpu_s(pids, with_children=True)
        await events_throughput(path, count=BARE_EVENTS)
        used_ms = (cpu_s(pids, with_children=True) - before) * 1000 / BARE_EVENTS
    finally:
        await path.stop()
    print(f"bare aio-pika: {used_ms:.3f} ms of CPU per event (this process and the broker)")
    return used_ms


# Through the gateway, the write limit a deployment has per user (ordermesh.gateway.ratelimit); the
# limits per address stay out of reach: all the load comes from this one address.
DEPLOYED_LIMITS = {
    "RATE_LIMIT_WRITE_PER_USER": str(
        RateLimitSettings.model_fields["rate_limit_write_per_user"].default
    ),
}


def system_pids(up: Running, broker: PrivateRabbitMQ) -> list[int]:
    """Every process of the system that serves an order: the services' instances, the gateway
    (Envoy, its agent), the broker, Redis, PostgreSQL (and their children: PostgreSQL's
    backends); not this load generator, nor the stand-ins for the mail and webhook
    providers."""
    pids = [p.process.pid for s in up.system.services for p in up.system.instances(s)]
    pids += [up.gateway.envoy.process.pid, up.gateway.agent.pid, broker.process.pid]
    pids += [up.redis.process.pid]
    if up.postgres is not None:
        pids.append(up.postgres.process.pid)
    assert None not in pids
    return pids  # type: ignore[return-value]


async def one_path(
    args: argparse.Namespace,
    shop: Shop,
    approvals: Approvals,
    users: list[Session],
    product_id: str,
    label: str,
    pids: list[int],
) -> tuple[float, float, float, int]:
    """The latency run and three bursts through `shop`; returns (p99 ms, median approved
    orders/s, CPU ms per order of `pids` over the bursts, failed orders of all four runs)."""
    await at_rate(shop, approvals, users, [product_id], rate=args.rate, seconds=2)
    paced = await at_rate(
        shop, approvals, users, [product_id], rate=args.rate, seconds=args.seconds
    )
    latencies = paced.latencies_ms
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    print(
        f"{label:<16} at {args.rate:g} orders/s for {args.seconds:g} s ({len(latencies)} "
        f"orders): PlaceOrder -> APPROVED p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
        f"p99 {p99:.1f} ms  (mean {statistics.fmean(latencies):.1f} ms; "
        f"{paced.failed} failed)",
        flush=True,
    )
    cpu_before = cpu_s(pids, with_children=True)
    bursts = [
        await burst(
            shop, approvals, users, [product_id], total=args.burst, in_flight=args.in_flight
        )
        for _ in range(3)
    ]
    cpu_ms = (cpu_s(pids, with_children=True) - cpu_before) * 1000 / (3 * args.burst)
    rates = [rate for rate, _ in bursts]
    failed = paced.failed + sum(f for _, f in bursts)
    orders_s = statistics.median(rates)
    print(
        f"{label:<16} bursts of {args.burst} with {args.in_flight} in flight: "
        + ", ".join(f"{r:.0f}" for r in rates)
        + f" approved orders/s (median {orders_s:.0f}; "
        + f"{sum(f for _, f in bursts)} failed); the system's CPU {cpu_ms:.1f} ms per order",
        flush=True,
    )
    return p99, orders_s, cpu_ms, failed


async def one_system(
    args: argparse.Namespace,
    directory: Path,
    broker: PrivateRabbitMQ,
    store: str,
    *,
    label: str = "",
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """The latency and burst runs on a system whose stores are `store`'s (with `env` added to
    the services'), first straight to the order service, then through the gateway."""
    label = label or store
    figures: dict[str, float] = {}
    environment = {**DEPLOYED_LIMITS, **(env or {})}
    async with running_system(directory, broker, store, 1, label=label, env=environment) as up:
        through = Shop(up.system, via=up.gateway.address)
        direct = Shop(up.system)
        approvals = Approvals()
        try:
            await approvals.start(up.system.amqp_url)
            product = await through.product(price_minor=100, stock=10**9)
            users = [await through.register() for _ in range(args.users)]
            pids = system_pids(up, broker)
            for path, shop in (("direct", direct), ("gateway", through)):
                p99, orders_s, cpu_ms, failed = await one_path(
                    args, shop, approvals, users, product.product_id, f"{label} {path}", pids
                )
                figures[f"{path}_p99_ms"], figures[f"{path}_orders_s"] = p99, orders_s
                figures[f"{path}_cpu_ms"], figures[f"{path}_failed"] = cpu_ms, failed
        finally:
            await through.close()
            await direct.close()
            await approvals.stop()
    return figures


async def run(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-saga-") as directory:
        broker = PrivateRabbitMQ(Path(directory) / "rabbitmq")
        broker.start()
        collector = PrivateRotel(Path(directory) / "rotel", describe=False)
        collector.start()
        traced = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        try:
            bare_ms = await bare_event_cpu_ms(broker)
            results["sqlite"] = await one_system(args, Path(directory), broker, "sqlite")
            results["pg"] = await one_system(args, Path(directory), broker, "postgres")
            results["traced_default"] = await one_system(
                args, Path(directory), broker, "sqlite", label="traced-default", env=traced
            )
            results["traced"] = await one_system(
                args, Path(directory), broker, "sqlite", label="traced",
                env={**traced, "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
            )  # fmt: skip
        finally:
            collector.stop()
            broker.remove()
    fields = [
        f"ref_ms={reference_ms():.0f}",
        f"log_level={args.log_level}",
        f"bare_event_cpu_ms={bare_ms:.3f}",
        f"sqlite_gateway_cpu_ms={results['sqlite']['gateway_cpu_ms']:.2f}",
    ]
    for label, figures in results.items():
        fields += [
            f"{label}_gateway_p99_ms={figures['gateway_p99_ms']:.2f}",
            f"{label}_gateway_orders_s={figures['gateway_orders_s']:.0f}",
            f"{label}_direct_p99_ms={figures['direct_p99_ms']:.2f}",
            f"{label}_direct_orders_s={figures['direct_orders_s']:.0f}",
            f"{label}_gateway_failed={figures['gateway_failed']:.0f}",
            f"{label}_direct_failed={figures['direct_failed']:.0f}",
        ]
    print("RESULT " + " ".join(fields), flush=True)
    sqlite, pg = results["sqlite"], results["pg"]
    per_order = sqlite["gateway_cpu_ms"] / (EVENTS_PER_ORDER * bare_ms)
    print(f"ratio: CPU per order through the gateway / CPU of {EVENTS_PER_ORDER} bare events "
          f"{per_order:.2f}")  # fmt: skip
    for path in ("gateway", "direct"):
        print(f"ratio: {path} postgres/sqlite orders/s "
              f"{pg[f'{path}_orders_s'] / sqlite[f'{path}_orders_s']:.2f}")  # fmt: skip
        for traced in ("traced_default", "traced"):
            ratio = results[traced][f"{path}_orders_s"] / sqlite[f"{path}_orders_s"]
            print(f"ratio: {path} {traced}/untraced orders/s {ratio:.2f}")
    for label, figures in results.items():
        print(f"ratio: {label} gateway/direct orders/s "
              f"{figures['gateway_orders_s'] / figures['direct_orders_s']:.2f}, p99 "
              f"{figures['gateway_p99_ms'] / figures['direct_p99_ms']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="orders/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=64)
    # Many customers, each with a token of their own (the gateway's token caches do not hold
    # one for all) and within the write limit per user at the default rate and bursts.
    parser.add_argument("--users", type=int, default=200)
    add_log_level(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
