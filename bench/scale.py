"""`make bench-scale`: the whole system with 1, 2, 4 and 10 instances of every service.

For each count and each store (SQLite, then PostgreSQL) a fresh system: every service of the
catalogue (the gateway's auth and rate-limit services included) with that many instances, all
registered in a private Redis, behind the gateway (Envoy and its agent), on one private
RabbitMQ node. Orders go through the gateway (gRPC), which spreads them over the instances the
registry gives it; an order counts as approved when its OrderApproved event arrives on a queue
this process binds to `order.events`. For each system:

- ready: seconds from the first start until every instance is registered and routed by Envoy
  (the first instance of each service in start order, as `make up` does, then the others all
  at once);
- memory: RSS and PSS of all the service processes (from /proc), in MB; and the CPU they use
  with no traffic at all (their timers), in cores;
- latency: orders at a fixed rate for a fixed time, PlaceOrder -> APPROVED p99, and how many
  failed (past the client's deadline). The default rate, 20/s, is below what every system
  here sustains on 2 cores (10 instances of everything on PostgreSQL is the weakest), so that
  p99 compares latencies, not queues growing past saturation (at 50/s it did);
- throughput: a burst with a fixed number of orders in flight, orders approved per second;
- CPU per order: the CPU seconds each component used during the burst (each service's
  instances, Envoy and its agent, RabbitMQ, Redis, PostgreSQL), per order approved: the
  capacity model's figures;
- join and leave, under the fixed-rate traffic: seconds from starting one more order instance
  until Envoy sends it a request, and from SIGKILLing one until Envoy routes to it no more.

On 2 cores throughput cannot grow with instances: the point is that 10 work, what they cost,
and that the system does not degrade. Ends with `RESULT ref_ms=... instances_10_ready_s=...
instances_10_rss_mb=... orders_s_1=... orders_s_10=... p99_ms_10=...` and the same for
PostgreSQL (`pg_...`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.events import percentile
from bench.machine import add_log_level, cpu_s, reference_ms
from bench.saga import Approvals, at_rate, burst
from bench.systems import running_system, shop_of
from harness import PrivateRabbitMQ
from harness.gateway import LocalGateway
from harness.postgres import PrivatePostgres
from harness.shop import Shop, eventually
from harness.system import System

COUNTS = (1, 2, 4, 10)
IDLE_S = 10.0


def rss_pss_mb(pids: list[int]) -> tuple[float, float]:
    """The RSS and PSS of these processes together, in MB (/proc gives kB)."""
    rss = pss = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        pss += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
    return rss / 1024, pss / 1024


@dataclass
class Figures:
    instances: int
    store: str
    ready_s: float = 0.0
    rss_mb: float = 0.0
    pss_mb: float = 0.0
    p99_ms: float = 0.0
    failed: int = 0
    orders_s: float = 0.0
    join_s: float = 0.0
    leave_s: float = 0.0
    # CPU the service processes use with no traffic (timers: health, heartbeats, polls), cores.
    idle_cores: float = 0.0
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    # PostgreSQL's transactions per order during the burst: committed, rolled back.
    commits_per_order: float = 0.0
    rollbacks_per_order: float = 0.0


def transactions(postgres: PrivatePostgres | None) -> tuple[int, int]:
    """(committed, rolled back) transactions of every database on the server so far (a
    rollback is mostly a transaction that met another on a row or a lock and was run again)."""
    if postgres is None:
        return 0, 0
    with psycopg.connect(postgres.url()) as db:
        row = db.execute(
            "SELECT sum(xact_commit), sum(xact_rollback) FROM pg_stat_database"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def requests_to(gateway: LocalGateway, cluster: str, address: str) -> int:
    """How many requests Envoy has sent to one host of a cluster (its admin's counters)."""
    match = re.search(
        rf"^{re.escape(cluster)}::{re.escape(address)}::rq_total::(\d+)$",
        gateway.envoy.admin("/clusters"),
        re.M,
    )
    return int(match.group(1)) if match else 0


async def joined_and_left(system: System, gateway: LocalGateway, name: str) -> tuple[float, float]:
    """Seconds until a new order instance gets its first request from Envoy; seconds until a
    SIGKILLed one is routed to no more."""
    started = time.perf_counter()
    new = await asyncio.to_thread(system.add_instance, "order", name)
    await eventually(
        lambda: requests_to(gateway, "order", new.address) > 0, timeout_s=60, what="a request"
    )
    joined = time.perf_counter() - started
    killed = time.perf_counter()
    new.kill()
    await asyncio.to_thread(gateway.wait_for_endpoint, "order", new.address, present=False)
    return joined, time.perf_counter() - killed


async def measure(args: argparse.Namespace, directory: Path, broker: PrivateRabbitMQ,
                  store: str, count: int) -> Figures:  # fmt: skip
    figures = Figures(count, store)
    approvals = Approvals()
    shop: Shop | None = None
    async with running_system(directory, broker, store, count, log_level=args.log_level) as running:
        system, gateway, postgres = running.system, running.gateway, running.postgres
        figures.ready_s = running.ready_s
        try:
            pids = [p.process.pid for s in system.services for p in system.instances(s)]
            assert None not in pids
            assert len(pids) == count * len(system.services)
            await asyncio.sleep(2)  # settled after start
            figures.rss_mb, figures.pss_mb = rss_pss_mb(pids)
            idle = cpu_s(pids)
            await asyncio.sleep(IDLE_S)
            figures.idle_cores = (cpu_s(pids) - idle) / IDLE_S

            shop, users, products = await shop_of(
                system, gateway, users=args.users, products=args.products
            )
            await approvals.start(system.amqp_url)
            await at_rate(shop, approvals, users, products, rate=args.rate, seconds=2)
            paced = await at_rate(
                shop, approvals, users, products, rate=args.rate, seconds=args.seconds
            )
            figures.p99_ms, figures.failed = percentile(paced.latencies_ms, 99), paced.failed

            components = {
                **{s: [p.process.pid for p in system.instances(s)] for s in system.services},
                "envoy": [gateway.envoy.process.pid],
                "agent": [gateway.agent.pid],
                "rabbitmq": [broker.process.pid],
                "redis": [running.redis.process.pid],
                **({"postgres": [postgres.process.pid]} if postgres is not None else {}),
            }
            before = {k: cpu_s(v, with_children=k == "postgres") for k, v in components.items()}
            commits, rollbacks = transactions(postgres)
            figures.orders_s = await burst(
                shop, approvals, users, products, total=args.burst, in_flight=args.in_flight
            )
            figures.cpu_ms_per_order = {
                k: (cpu_s(v, with_children=k == "postgres") - before[k]) * 1000 / args.burst
                for k, v in components.items()
            }
            after_commits, after_rollbacks = transactions(postgres)
            figures.commits_per_order = (after_commits - commits) / args.burst
            figures.rollbacks_per_order = (after_rollbacks - rollbacks) / args.burst

            traffic = asyncio.create_task(
                at_rate(shop, approvals, users, products, rate=args.rate, seconds=15)
            )
            await asyncio.sleep(2)
            figures.join_s, figures.leave_s = await joined_and_left(system, gateway, "order-extra")
            await traffic
            cpu = "  ".join(f"{k} {v:.2f}" for k, v in figures.cpu_ms_per_order.items())
            print(
                f"{store:<8} {count:>2} instances each ({len(pids)} processes): ready in "
                f"{figures.ready_s:.1f} s; RSS {figures.rss_mb:.0f} MB, "
                f"PSS {figures.pss_mb:.0f} MB; "
                f"idle {figures.idle_cores:.2f} cores; "
                f"at {args.rate:g}/s p99 {figures.p99_ms:.1f} ms ({figures.failed} failed); "
                f"burst {figures.orders_s:.0f} orders/s; a new instance's first request after "
                f"{figures.join_s:.2f} s, a killed one out of rotation after "
                f"{figures.leave_s:.2f} s; CPU ms per order: {cpu}"
                + (
                    f"; PostgreSQL transactions per order: {figures.commits_per_order:.1f} "
                    f"committed, {figures.rollbacks_per_order:.2f} rolled back"
                    if postgres is not None
                    else ""
                ),
                flush=True,
            )
            return figures
        finally:
            if shop is not None:
                await shop.close()
            await approvals.stop()


async def run(args: argparse.Namespace) -> None:
    results: dict[tuple[str, int], Figures] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
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
    fields = [f"ref_ms={reference_ms():.0f}"]
    for store in args.stores:
        prefix = "" if store == "sqlite" else "pg_"
        most, least = max(args.counts), min(args.counts)
        top = results[store, most]
        fields += [
            f"{prefix}instances_{most}_ready_s={top.ready_s:.1f}",
            f"{prefix}instances_{most}_rss_mb={top.rss_mb:.0f}",
            f"{prefix}instances_{most}_pss_mb={top.pss_mb:.0f}",
            f"{prefix}orders_s_{least}={results[store, least].orders_s:.0f}",
            f"{prefix}orders_s_{most}={top.orders_s:.0f}",
            f"{prefix}p99_ms_{least}={results[store, least].p99_ms:.1f}",
            f"{prefix}p99_ms_{most}={top.p99_ms:.1f}",
            f"{prefix}failed_{most}={top.failed}",
            f"{prefix}join_s_{most}={top.join_s:.2f}",
            f"{prefix}leave_s_{most}={top.leave_s:.2f}",
        ]
    print("RESULT " + " ".join(fields), flush=True)
    for store in args.stores:
        base = results[store, min(args.counts)]
        for count in args.counts:
            figures = results[store, count]
            print(f"ratio: {store} orders/s {count} vs {base.instances} instances "
                  f"{figures.orders_s / base.orders_s:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s for the latency run")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--products", type=int, default=20)
    add_log_level(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
