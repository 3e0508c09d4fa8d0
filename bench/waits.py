"""`make bench-waits`: does any order wait for a poll? Orders placed one at a time through the
gateway's REST API on `make up` itself (its own run directory and ports, logs at INFO), with 1, 2
and 4 instances of every service, on SQLite and on PostgreSQL (`make up STORE=postgres`).

An order's saga crosses services several times (PlaceOrder, then commands and replies through
each service's outbox and the broker); with more than one instance, the instance holding a
store's outbox lease publishes what the other instances commit as soon as its store tells it
(`Store.watching`). A notice it misses leaves the message to its next poll, a second later
(`OUTBOX_POLL_INTERVAL_S`): such an order takes over a second instead of tens of milliseconds.

For each system: ORDERS orders, each by the next of 10 customers for a product with ample stock,
each timed from its POST /v1/orders until GET /v1/orders/{id} (asked every 5 ms) shows it
decided, a pause of 50 ms between orders; the count over 100 ms and over 500 ms, p50, p99 and the
slowest. The system with 1 instance of each, where no hop crosses instances, is the baseline the
others are read against in the same run. The target: none over 100 ms with 2 and 4 instances.

Where a slow order spent its time: each order carries a correlation id of the bench's own
(`x-correlation-id`), which every service's log lines name; for the orders over 100 ms, and
for as many orders of about the median as a reference, the lines of that id from every process
(`ordermesh.logfiles.search`, as `make logs ID=...` reads them) give the steps of the saga, timed
from the POST. Printed: each slow order's steps, and over all of them which gap between two
steps was the longest (`--timelines 0` skips it). With `--traced` every trace is sampled and
exported to a receiver in this process, and the slow orders' spans split each hop further
(relay, publish and confirm, delivery, handling); tracing costs the system CPU. The decision
is the order service's last step; what follows it until the bench's GET sees it is the bench's
own polling and the gateway's.

The services' garbage collector is read from make up's Prometheus before and after the orders
(`ordermesh_gc_pause_seconds` of every instance): its passes meanwhile, how many stopped a
service for over 10 and over 50 ms, and the longest's bucket.

Ends with `RESULT ref_ms=... sqlite_over_100ms_1=... sqlite_over_100ms_2=... ... pg_...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from ordermesh.logfiles import search

from bench.events import percentile
from bench.machine import reference_ms
from bench.systems import rest_customer
from harness import running
from harness.otlp import OtlpReceiver
from harness.process import ManagedProcess
from harness.running import ADMIN, make_up

SLOW_MS = (100.0, 500.0)
CUSTOMERS = 10
# The bench's own sign-ins and orders come from one address and 10 customers: out of reach.
LIMITS = {
    "RATE_LIMIT_SIGN_IN": "1000/m",
    "RATE_LIMIT_WRITE_PER_USER": "100000/m",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "100000/m",
}


async def a_product(http: aiohttp.ClientSession, gateway: str, admin: tuple[str, str]) -> str:
    login = {"email": admin[0], "password": admin[1]}
    async with http.post(f"{gateway}/v1/auth/login", json=login) as answer:
        token = (await answer.json())["tokens"]["accessToken"]
    product = {
        "sku": f"WAITS-{uuid.uuid4().hex[:8].upper()}",
        "name": "Bench kettle",
        "price": {"amountMinor": 100, "currencyCode": "EUR"},
        "initialStock": 1_000_000,
    }
    headers = {"authorization": f"Bearer {token}"}
    async with http.post(f"{gateway}/v1/products", json=product, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["product"]["productId"])


@dataclass(frozen=True)
class Timed:
    ms: float  # from placing the order until a GET showed it decided
    correlation_id: str
    started: float  # time.time() when it was placed, the clock the log lines are stamped by


async def one_order(
    http: aiohttp.ClientSession, gateway: str, auth: dict[str, str], product_id: str
) -> Timed:
    order = {
        "idempotencyKey": str(uuid.uuid4()),
        "items": [{"productId": product_id, "quantity": 1}],
    }
    correlation_id = f"waits-{uuid.uuid4().hex}"
    headers = {**auth, "x-correlation-id": correlation_id}
    started_at, started = time.time(), time.perf_counter()
    async with http.post(f"{gateway}/v1/orders", json=order, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        order_id = (await answer.json())["order"]["orderId"]
    while True:
        async with http.get(f"{gateway}/v1/orders/{order_id}", headers=auth) as answer:
            status = (await answer.json())["order"]["status"]
        if status != "ORDER_STATUS_PENDING":
            return Timed((time.perf_counter() - started) * 1000, correlation_id, started_at)
        if time.perf_counter() - started > 30:
            raise AssertionError(f"order {order_id} still PENDING after 30 s")
        await asyncio.sleep(0.005)


# The garbage collector's passes of every service instance, by the bound (seconds) of their
# histogram bucket (`ordermesh_gc_pause_seconds`, cumulative), as make up's Prometheus has them.
PAUSES = "sum by (le) (ordermesh_gc_pause_seconds_bucket)"
SCRAPE_WAIT_S = 5.0  # two of make up's scrapes (every 2 s) and a margin
PAUSE_LIMITS_S = (0.01, 0.05)


async def gc_buckets(http: aiohttp.ClientSession, prometheus: str) -> dict[float, float]:
    """Every instance's passes so far, summed: the count at or under each bucket's bound."""
    await asyncio.sleep(SCRAPE_WAIT_S)
    async with http.get(f"{prometheus}/api/v1/query", params={"query": PAUSES}) as answer:
        result = (await answer.json())["data"]["result"]
    return {float(r["metric"]["le"]): float(r["value"][1]) for r in result}


def pauses(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """The passes between two readings: how many, how many over each of PAUSE_LIMITS_S, and
    the bound of the bucket that holds the longest (ms)."""
    grew = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = grew[float("inf")]
    figures = {"gc_passes": total}
    for limit in PAUSE_LIMITS_S:
        figures[f"gc_over_{limit * 1000:.0f}ms"] = total - grew[limit]
    figures["gc_max_ms"] = 1000 * min(b for b, n in grew.items() if n == total)
    return figures


async def orders(
    args: argparse.Namespace, up: ManagedProcess, run_dir: Path
) -> tuple[list[Timed], dict[str, float]]:
    """The orders, and the services' garbage-collector passes while they were placed."""
    admin = ADMIN.search(up.log_path.read_text())
    assert admin, up.log_path.read_text()[-2000:]
    addresses = running.published(run_dir)
    gateway = addresses["GATEWAY_URL"]
    tls = ssl.create_default_context(cafile=addresses["GATEWAY_CA"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:
        product_id = await a_product(http, gateway, (admin[1], admin[2]))
        customers = [await rest_customer(http, gateway) for _ in range(CUSTOMERS)]
        for n in range(20):  # warm-up
            await one_order(http, gateway, customers[n % CUSTOMERS], product_id)
        before = await gc_buckets(http, addresses["PROMETHEUS_URL"])
        times = []
        for n in range(args.orders):
            times.append(await one_order(http, gateway, customers[n % CUSTOMERS], product_id))
            await asyncio.sleep(0.05)
        collected = pauses(before, await gc_buckets(http, addresses["PROMETHEUS_URL"]))
    return times, collected


@dataclass(frozen=True)
class Step:
    """One log line of an order as a step of the saga."""

    at_ms: float  # since the order was placed
    kind: str  # the service and what it handled: the same for every instance
    shown: str  # the instance, what it handled and, for an RPC, its own time


def steps(timed: Timed, records: list[dict[str, Any]]) -> list[Step]:
    """The order's log lines as steps, in time order."""
    found = []
    for r in records:
        what = f"{r.get('event')} {r.get('type') or r.get('method') or ''}"
        took = f" (in {r['ms']} ms)" if "ms" in r else ""
        at_ms = (datetime.fromisoformat(r["timestamp"]).timestamp() - timed.started) * 1000
        found.append(Step(at_ms, f"{r.get('service')} {what}", f"{r.get('instance')} {what}{took}"))
    return found


def longest_gap(timeline: list[Step], total_ms: float) -> tuple[float, str]:
    """The longest wait between two steps (from the POST to the first, between steps, from the
    last to the GET that saw the decision) and its ends, the services' instances left out."""
    marks = [Step(0.0, "POST", ""), *timeline, Step(total_ms, "GET saw it decided", "")]
    return max((b.at_ms - a.at_ms, f"{a.kind} -> {b.kind}") for a, b in itertools.pairwise(marks))


def spans_of(
    timed: Timed, records: list[dict[str, Any]], receiver: OtlpReceiver
) -> list[tuple[float, str]]:
    """The spans of the order's trace (its log lines name it) as (ms since it was placed, what:
    the span, its process and how long it took), in time order: they split a hop between
    services into the relay's wake-up (commit -> publish), the publish and its confirm, the
    delivery (publish -> process) and the consumer's handling."""
    trace_ids = {r["trace_id"] for r in records if r.get("trace_id")}
    spans = [span for trace_id in trace_ids for span in receiver.spans(trace_id)]
    return sorted(
        (
            span.start_ns / 1e6 - timed.started * 1000,
            f"{span.service} {span.kind} {span.name} ({(span.end_ns - span.start_ns) / 1e6:.1f}ms)",
        )
        for span in spans
    )


def explain(
    times: list[Timed], run_dir: Path, shown: int, receiver: OtlpReceiver | None = None
) -> None:
    """Prints where the orders over 100 ms spent their time, beside orders of about the median
    (and, traced, the spans of the slow ones)."""
    slow = sorted((t for t in times if t.ms > SLOW_MS[0]), key=lambda t: -t.ms)[:shown]
    if not slow or not shown:
        return
    middle = sorted(times, key=lambda t: t.ms)[len(times) // 2 - shown // 2 :][:shown]
    found: dict[str, list[dict[str, Any]]] = {}
    for record in search(run_dir, [t.correlation_id for t in slow + middle], limit=100_000):
        found.setdefault(str(record.get("correlation_id")), []).append(record)
    for label, group in (("slow", slow), ("median", middle)):
        gaps: dict[str, list[float]] = {}
        for timed in group:
            records = found.get(timed.correlation_id, [])
            timeline = steps(timed, records)
            gap_ms, between = longest_gap(timeline, timed.ms)
            gaps.setdefault(between, []).append(gap_ms)
            if label == "slow":
                print(f"  order {timed.correlation_id}: {timed.ms:.0f} ms")
                for one in timeline:
                    print(f"    +{one.at_ms:7.1f} ms  {one.shown}")
                if receiver is not None:
                    for at_ms, what in spans_of(timed, records, receiver):
                        print(f"    +{at_ms:7.1f} ms  span {what}")
        for between, values in sorted(gaps.items(), key=lambda item: -len(item[1])):
            print(
                f"  {label} orders ({len(group)}): longest gap {between}: {len(values)} of them, "
                f"{min(values):.0f}-{max(values):.0f} ms"
            )


def measure(args: argparse.Namespace, store: str, count: int) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        env, receiver = dict(LIMITS), None
        if args.traced:  # every trace sampled, exported to a receiver in this process
            receiver = OtlpReceiver()
            receiver.start()
            stack.callback(receiver.stop)
            env |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            }
        up, run_dir = stack.enter_context(make_up(count, store=store, env=env))
        timed, collected = asyncio.run(orders(args, up, run_dir))
        if receiver is not None:
            time.sleep(6)  # the services' last spans are exported within 5 s (the SDK's delay)
            print(f"  traced: {len(receiver.spans())} spans received", flush=True)
        explain(timed, run_dir, args.timelines, receiver)
    times = [t.ms for t in timed]
    figures = {
        **{f"over_{limit:.0f}ms": float(sum(t > limit for t in times)) for limit in SLOW_MS},
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
        **collected,
    }
    print(
        f"{store:<8} {count} instances of each: {len(times)} orders one at a time, "
        f"{figures['over_100ms']:.0f} over 100 ms, {figures['over_500ms']:.0f} over 500 ms, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"slowest {figures['max_ms']:.0f} ms; the services' garbage collector meanwhile: "
        f"{figures['gc_passes']:.0f} passes, {figures['gc_over_10ms']:.0f} over 10 ms, "
        f"{figures['gc_over_50ms']:.0f} over 50 ms, the longest under "
        f"{figures['gc_max_ms']:g} ms",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument(
        "--timelines", type=int, default=10, help="slow orders whose steps are printed"
    )
    parser.add_argument(
        "--traced",
        action="store_true",
        help="sample every trace and print the slow orders' spans (it costs the system CPU)",
    )
    args = parser.parse_args()
    results = {(s, c): measure(args, s, c) for s in args.stores for c in args.counts}
    fields = [f"ref_ms={reference_ms():.0f}", f"orders={args.orders}"]
    for (store, count), figures in results.items():
        prefix = "sqlite" if store == "sqlite" else "pg"
        fields += [
            f"{prefix}_over_100ms_{count}={figures['over_100ms']:.0f}",
            f"{prefix}_over_500ms_{count}={figures['over_500ms']:.0f}",
            f"{prefix}_p99_ms_{count}={figures['p99_ms']:.1f}",
            f"{prefix}_max_ms_{count}={figures['max_ms']:.0f}",
            f"{prefix}_gc_over_10ms_{count}={figures['gc_over_10ms']:.0f}",
            f"{prefix}_gc_over_50ms_{count}={figures['gc_over_50ms']:.0f}",
        ]
    print("RESULT " + " ".join(fields), flush=True)
    least = min(args.counts)
    for (store, count), figures in results.items():
        base = results.get((store, least))
        if base is not None and count != least:
            print(f"ratio: {store} p99 {count} vs {least} instances "
                  f"{figures['p99_ms'] / base['p99_ms']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
