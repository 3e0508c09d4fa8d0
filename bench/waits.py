"""`make bench-waits`: does any order wait for a poll? Orders one after another at a low rate
through the gateway, on the whole system with 1, 2 and 4 instances of every service, on SQLite
and on PostgreSQL, at the log level the system ships with (INFO).

An order's saga crosses services several times (PlaceOrder, then commands and replies through
each service's outbox and the broker); with more than one instance, the instance holding a
store's outbox lease publishes what the other instances commit, as soon as its store tells it
(`Store.watching`). A notice it misses leaves the message to its next poll, a second later
(`OUTBOX_POLL_INTERVAL_S`): such an order takes over a second instead of tens of milliseconds.

For each system: ORDERS orders at RATE per second (each from PlaceOrder through the gateway
until its OrderApproved arrives on a queue bound to `order.events`), after a warm-up; the count
over 100 ms and over 500 ms, p50, p99 and the slowest. The system with 1 instance of each,
where no hop crosses instances, is the baseline the others are read against in the same run.
The target: none over 100 ms with 2 and 4 instances.

Ends with `RESULT ref_ms=... sqlite_over_100ms_1=... sqlite_over_100ms_2=... ... pg_...`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.events import percentile
from bench.machine import reference_ms
from bench.saga import Approvals, at_rate
from bench.systems import running_system, shop_of
from harness import PrivateRabbitMQ

SLOW_MS = (100.0, 500.0)


async def measure(
    args: argparse.Namespace, directory: Path, broker: PrivateRabbitMQ, store: str, count: int
) -> dict[str, float]:
    async with running_system(directory, broker, store, count) as running:
        shop, users, products = await shop_of(
            running.system, running.gateway, users=args.users, products=args.products
        )
        approvals = Approvals()
        try:
            await approvals.start(running.system.amqp_url)
            await at_rate(shop, approvals, users, products, rate=args.rate, seconds=2)
            paced = await at_rate(
                shop, approvals, users, products, rate=args.rate, seconds=args.orders / args.rate
            )
        finally:
            await shop.close()
            await approvals.stop()
    times = paced.latencies_ms
    figures = {
        **{f"over_{limit:.0f}ms": float(sum(t > limit for t in times)) for limit in SLOW_MS},
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
        "failed": float(paced.failed),
    }
    print(
        f"{store:<8} {count} instances of each: {len(times)} orders at {args.rate:g}/s, "
        f"{figures['over_100ms']:.0f} over 100 ms, {figures['over_500ms']:.0f} over 500 ms, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"slowest {figures['max_ms']:.0f} ms, {paced.failed} failed",
        flush=True,
    )
    return figures


async def run(args: argparse.Namespace) -> None:
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-waits-") as directory:
        broker = PrivateRabbitMQ(Path(directory) / "rabbitmq")
        broker.start()
        try:
            for store in args.stores:
                for count in args.counts:
                    results[store, count] = await measure(
                        args, Path(directory), broker, store, count
                    )
        finally:
            broker.remove()
    fields = [f"ref_ms={reference_ms():.0f}", f"orders={args.orders}", f"rate={args.rate:g}"]
    for (store, count), figures in results.items():
        prefix = "sqlite" if store == "sqlite" else "pg"
        fields += [
            f"{prefix}_over_100ms_{count}={figures['over_100ms']:.0f}",
            f"{prefix}_p99_ms_{count}={figures['p99_ms']:.1f}",
            f"{prefix}_max_ms_{count}={figures['max_ms']:.0f}",
        ]
    print("RESULT " + " ".join(fields), flush=True)
    for (store, count), figures in results.items():
        base = results.get((store, min(args.counts)))
        if base is not None and count != min(args.counts):
            print(f"ratio: {store} p99 {count} vs {min(args.counts)} instances "
                  f"{figures['p99_ms'] / base['p99_ms']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--products", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
