"""The reconciliation of a verification: what it sent against what the system did, as the four
claims, each PASS or FAIL with its measured value and what was found wrong.

Every read goes through the gateway's public and operator APIs (as the order's customer, or as
the admin) and Prometheus: nothing reads a store or a queue directly, so that it holds of any
deployment the gateway fronts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from harness.prometheus import api as prometheus_api
from services import messaging
from tools.verify.api import Api
from tools.verify.orders import Customer, Order

__all__ = [
    "AVAILABILITY_FLOOR",
    "LATENCY_LIMIT_MS",
    "Claim",
    "Decisions",
    "availability",
    "decisions",
    "instances",
    "message_ages",
    "zero_loss",
]

T = TypeVar("T")

AVAILABILITY_FLOOR = 0.999
LATENCY_LIMIT_MS = 50.0
FINAL = {"ORDER_STATUS_APPROVED", "ORDER_STATUS_REJECTED"}
IN_FLIGHT = 16  # reads at a time while reconciling
SHOWN = 10  # problems listed per claim


@dataclass
class Claim:
    name: str
    passed: bool
    value: str
    problems: list[str] = field(default_factory=list)
    figures: Mapping[str, float] = field(default_factory=dict)


async def _bounded(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def availability(orders: Sequence[Order]) -> Claim:
    answered = sum(o.status == 200 for o in orders)
    resent = sum(o.status == 200 and o.attempts > 1 for o in orders)
    share = answered / len(orders) if orders else 0.0
    failures = Counter(
        f"{o.status or 'no answer'} {o.error[:120]}" for o in orders if o.status != 200
    )
    return Claim(
        "availability",
        passed=bool(orders) and share >= AVAILABILITY_FLOOR,
        value=f"{answered:,} of {len(orders):,} orders answered ({share:.3%}; floor "
        f"{AVAILABILITY_FLOOR:.1%}), {resent:,} of them when sent again after UNAVAILABLE",
        problems=[f"{n} x {why}" for why, n in failures.most_common(SHOWN)],
        figures={"sent": len(orders), "answered": answered, "share": share, "resent": resent},
    )


@dataclass
class Decisions:
    """The accepted orders as their customers read them: order id -> status, and why each
    rejected one was."""

    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


async def decisions(orders: Sequence[Order], timeout_s: float) -> Decisions:
    """Each accepted order's status once none is PENDING any more (or `timeout_s` passed)."""
    accepted = [o for o in orders if o.accepted]
    decided = Decisions()
    status = decided.status
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [o for o in accepted if status.get(o.order_id) not in FINAL]
        if not pending or time.monotonic() > deadline:
            return decided

        async def read(order: Order) -> None:
            answer = await order.customer.api.call(
                "GET", f"/v1/orders/{order.order_id}", token=order.customer.token
            )
            if answer.ok:
                status[order.order_id] = str(answer.body["order"]["status"])
                decided.reasons[order.order_id] = str(answer.body["order"].get("statusReason", ""))

        await _bounded(partial(read, o) for o in pending)
        if any(status.get(o.order_id) not in FINAL for o in pending):
            await asyncio.sleep(1.0)


def _rejections(accepted: Sequence[Order], decided: Decisions) -> str:
    """ ", rejected: n for <reason>, ..." for the rejected orders, commonest reasons first."""
    why = Counter(
        decided.reasons.get(o.order_id) or "no reason given"
        for o in accepted
        if decided.status.get(o.order_id) == "ORDER_STATUS_REJECTED"
    )
    shown = "; ".join(f"{n} for {reason[:120]}" for reason, n in why.most_common(3))
    return f", rejected: {shown}" if why else ""


async def _notified(customer: Customer) -> Counter[tuple[str, str, str]]:
    """The customer's notifications: (subject id, kind, channel) -> how many."""
    seen: Counter[tuple[str, str, str]] = Counter()
    token = ""
    while True:
        params = {"pageSize": "100", **({"pageToken": token} if token else {})}
        body = await customer.api.ok(
            "GET", "/v1/notifications", token=customer.token, params=params
        )
        for n in body.get("notifications", []):
            seen[(n.get("subjectId", ""), n.get("kind", ""), n.get("channel", ""))] += 1
        token = body.get("nextPageToken", "")
        if not token:
            return seen


def _consumers() -> dict[str, set[str]]:
    """Message type -> the services subscribed to it."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for service, subscriptions in messaging.subscriptions().items():
        for subscription in subscriptions:
            for kind in subscription.types:  # not what it drains: it no longer binds those
                by_type[kind.DESCRIPTOR.full_name].add(service)
    return by_type


async def _history(admin: Api, token: str, service: str, **query: Any) -> list[dict[str, Any]]:
    params: list[tuple[str, str]] = []
    if query.get("correlation_id"):
        params.append(("correlationId", query["correlation_id"]))
    params += [("eventIds", e) for e in query.get("event_ids", ())]
    body = await admin.ok("GET", f"/v1/ops/{service}/message-history", token=token, params=params)
    entries: list[dict[str, Any]] = body.get("entries", [])
    return entries


async def zero_loss(
    orders: Sequence[Order],
    decided: Decisions,
    *,
    admins: Sequence[Api],
    admin_token: str,
    product: Mapping[str, Any],
    stock_before: int,
    timeout_s: float,
) -> Claim:
    """Every accepted order decided, its customer notified once; every message of its flow
    processed once by each service subscribed to it, none dead-lettered or parked; stock and
    credit those of the approved orders."""
    problems: list[str] = []
    status = decided.status
    accepted = [o for o in orders if o.accepted]
    undecided = [o for o in accepted if status.get(o.order_id) not in FINAL]
    problems += [
        f"order {o.order_id} ({o.correlation_id}) still {status.get(o.order_id, 'unread')}"
        for o in undecided
    ]
    approved = [o for o in accepted if status.get(o.order_id) == "ORDER_STATUS_APPROVED"]

    # Notified once per kind and channel, each decided order at least once.
    customers = {o.customer.email: o.customer for o in accepted}
    deadline = time.monotonic() + timeout_s
    while True:
        seen: Counter[tuple[str, str, str]] = Counter()
        for counts in await _bounded(partial(_notified, c) for c in customers.values()):
            seen.update(counts)
        notified = {subject for subject, _, _ in seen}
        missing = [
            o
            for o in accepted
            if o.order_id in status and o.order_id not in notified and status[o.order_id] in FINAL
        ]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    problems += [f"order {o.order_id} decided, its customer not notified" for o in missing]
    ours = {o.order_id for o in accepted}
    problems += [
        f"order {subject} notified {n} times ({kind}, {channel})"
        for (subject, kind, channel), n in seen.items()
        if subject in ours and n > 1
    ]

    # Every message of each order's flow, from the outboxes of the services that publish, then
    # in the inboxes of the services subscribed to it.
    services = sorted(messaging.events_published())
    consumers = _consumers()
    entries: list[dict[str, Any]] = []
    asked = [
        (o, s, admins[n % len(admins)])
        for n, (o, s) in enumerate((o, s) for o in accepted for s in services)
    ]
    for found in await _bounded(
        partial(_history, api, admin_token, service, correlation_id=order.correlation_id)
        for order, service, api in asked
    ):
        entries += found
    published = {e["eventId"]: e for e in entries if e.get("fate") == "MESSAGE_FATE_PUBLISHED"}
    # In a dead-letter queue now, parked in an outbox, or written to one and never published.
    bad = [
        e
        for e in entries
        if e.get("fate") in ("MESSAGE_FATE_DEAD_LETTERED", "MESSAGE_FATE_PARKED")
        or (e.get("fate") == "MESSAGE_FATE_PENDING" and e["eventId"] not in published)
    ]
    problems += [
        f"{e['type']} {e['eventId']} {e['fate'].removeprefix('MESSAGE_FATE_').lower()}"
        f" ({e.get('where', '')}: {e.get('detail', '')[:100]})"
        for e in bad
    ]
    expected: dict[str, list[str]] = defaultdict(list)  # consuming service -> event ids
    for event_id, entry in published.items():
        for service in consumers.get(entry["type"], ()):
            expected[service].append(event_id)
    processed: Counter[tuple[str, str]] = Counter()
    batches = [
        (s, ids[i : i + 100]) for s, ids in expected.items() for i in range(0, len(ids), 100)
    ]
    for (service, ids), found in zip(
        batches,
        await _bounded(
            partial(_history, admins[n % len(admins)], admin_token, s, event_ids=ids)
            for n, (s, ids) in enumerate(batches)
        ),
        strict=True,
    ):
        for entry in found:
            if entry.get("fate") == "MESSAGE_FATE_PROCESSED" and entry["eventId"] in ids:
                processed[(service, entry["eventId"])] += 1
    expected_pairs = [(s, e) for s, ids in expected.items() for e in ids]
    unprocessed = [(s, e) for s, e in expected_pairs if processed[(s, e)] == 0]
    twice = [(s, e) for s, e in expected_pairs if processed[(s, e)] > 1]
    problems += [f"{published[e]['type']} {e} not processed by {s}" for s, e in unprocessed]
    problems += [f"{published[e]['type']} {e} processed twice by {s}" for s, e in twice]

    # Stock and credit: the approved orders' (one unit of price 1 each).
    answer = await admins[0].ok("GET", f"/v1/products/{product['productId']}")
    stock_after = int(answer["product"]["availableStock"])
    if stock_before - stock_after != len(approved):
        problems.append(f"stock taken {stock_before - stock_after}, approved {len(approved)}")
    price = int(product["price"]["amountMinor"])
    per_customer = Counter(o.customer.email for o in approved)

    async def credit_of(customer: Customer) -> str | None:
        profile = (await customer.api.ok("GET", "/v1/users/me", token=customer.token))["profile"]
        held = customer.credit_before_minor - int(profile["creditAvailable"]["amountMinor"])
        wanted = per_customer[customer.email] * price
        return (
            None if held == wanted else f"{customer.email}: credit held {held}, approved {wanted}"
        )

    problems += [p for p in await _bounded(partial(credit_of, c) for c in customers.values()) if p]

    value = (
        f"{len(accepted) - len(undecided):,} of {len(accepted):,} accepted orders decided "
        f"({len(approved):,} approved{_rejections(accepted, decided)}); "
        f"{len(published):,} messages published, "
        f"{len(expected_pairs) - len(unprocessed):,} of {len(expected_pairs):,} deliveries "
        f"processed, {len(twice)} twice, {len(bad)} dead-lettered, parked or pending"
    )
    return Claim(
        "zero loss",
        passed=not problems and bool(accepted),
        value=value,
        problems=problems[:SHOWN]
        + ([f"... and {len(problems) - SHOWN} more"] if len(problems) > SHOWN else []),
        figures={
            "accepted": len(accepted),
            "decided": len(accepted) - len(undecided),
            "approved": len(approved),
            "published": len(published),
            "deliveries": len(expected_pairs),
            "unprocessed": len(unprocessed),
            "twice": len(twice),
            "bad": len(bad),
            "problems": len(problems),
        },
    )


AGE = "sum by (le) (increase(ordermesh_message_age_seconds_bucket[{w}s]))"


def _scalar(url: str, expr: str, at: float) -> float | None:
    result = prometheus_api(url, "query", {"query": expr, "time": f"{at:.3f}"})["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: nothing observed


async def _ages(
    prometheus: str, started_at: float, ended_at: float
) -> tuple[float, float, float] | None:
    """p50 and p99 (ms) of the age of the messages processed between two moments (Unix time),
    and how many; None if none was."""
    window = max(1, round(ended_at - started_at))
    found = []
    for q in (0.5, 0.99):
        expr = f"histogram_quantile({q}, {AGE.format(w=window)})"
        found.append(await asyncio.to_thread(_scalar, prometheus, expr, ended_at))
    count = f"sum(increase(ordermesh_message_age_seconds_count[{window}s]))"
    found.append(await asyncio.to_thread(_scalar, prometheus, count, ended_at))
    p50, p99, messages = found
    if p50 is None or p99 is None:
        return None
    return p50 * 1000, p99 * 1000, messages or 0.0


async def message_ages(
    prometheus: str, started_at: float, calm_until: float, ended_at: float
) -> Claim:
    """The messages' age when processed: the claim holds of the run's calm part (before the
    first fault), and the age while faults were made is shown beside it."""
    calm = await _ages(prometheus, started_at, calm_until)
    faulted = await _ages(prometheus, calm_until, ended_at)
    if calm is None:
        return Claim("message processing", False, "no message ages in Prometheus for the run")
    p50, p99, messages = calm
    value = (
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms from outbox to processed ({messages:,.0f} "
        f"messages before the first fault; limit {LATENCY_LIMIT_MS:g} ms at p99)"
    )
    figures = {"p50_ms": p50, "p99_ms": p99, "messages": messages}
    if faulted is not None:
        value += f"; while faults were made: p50 {faulted[0]:.1f} ms, p99 {faulted[1]:.1f} ms"
        figures |= {"faults_p50_ms": faulted[0], "faults_p99_ms": faulted[1]}
    return Claim("message processing", passed=p99 < LATENCY_LIMIT_MS, value=value, figures=figures)


def age_series(
    prometheus: str, started_at: float, ended_at: float
) -> dict[str, list[tuple[float, float]]]:
    """p50 and p99 of the messages' age (ms) over the run, every 2 s, over the last 10 s."""
    series: dict[str, list[tuple[float, float]]] = {}
    for q in (0.5, 0.99):
        rate = "sum by (le) (rate(ordermesh_message_age_seconds_bucket[10s]))"
        expr = f"histogram_quantile({q}, {rate})"
        data = prometheus_api(
            prometheus,
            "query_range",
            {
                "query": expr,
                "start": f"{started_at:.3f}",
                "end": f"{ended_at:.3f}",
                "step": "2",
            },
        )["result"]
        points = data[0]["values"] if data else []
        series[f"messages p{q * 100:g}"] = [
            (float(t) - started_at, float(v) * 1000) for t, v in points if v not in ("NaN", "+Inf")
        ]
    return series


_CALLS = (
    "sum by (service, instance_id) (increase(grpc_server_handled_total"
    '{{grpc_service!~"grpc[.].*"}}[{w}s]))'
)
_MESSAGES = (
    'sum by (service, instance_id) (increase(ordermesh_messages_total{{stage="processed"}}[{w}s]))'
)
# Calls and messages of each instance: their sum where it has both (an `or` alone would keep
# only the calls, none maybe, of an instance that processed messages), else either.
SERVED = f"({_CALLS} + {_MESSAGES}) or {_CALLS} or {_MESSAGES}"
# The instances Prometheus scraped successfully in the window (a target whose instance is gone
# stays listed, failing, until the registry forgets it).
REGISTERED = 'count by (service, instance_id) (max_over_time(up{{job="ordermesh"}}[{w}s]) == 1)'


async def instances(
    prometheus: str,
    services: Sequence[str],
    started_at: float,
    calm_until: float,
    ended_at: float,
) -> Claim:
    """How many instances of each service served calls or messages during the run, of those
    Prometheus scraped before the first fault. An instance that replaced a killed one (a
    container's replacement has an id of its own) is counted when it served, and not required
    to: the last to be replaced may come up as the run ends."""
    window = max(1, round(ended_at - started_at))
    calm = max(1, round(calm_until - started_at))

    def read(expr: str, at: float) -> list[dict[str, Any]]:
        query = {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = prometheus_api(prometheus, "query", query)["result"]
        return result

    def by_service(rows: list[dict[str, Any]], served: bool = False) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if not served or float(row["value"][1]) > 0:
                found[row["metric"].get("service", "")].add(row["metric"].get("instance_id", ""))
        return found

    served = by_service(
        await asyncio.to_thread(read, SERVED.format(w=window), ended_at), served=True
    )
    registered = by_service(await asyncio.to_thread(read, REGISTERED.format(w=calm), calm_until))
    shown = ", ".join(
        f"{s} {len(served[s] & registered[s])}/{len(registered[s])}"
        + (f" (+{len(served[s] - registered[s])} replacing killed ones)"
           if served[s] - registered[s] else "")
        for s in services
    )  # fmt: skip
    idle = [
        f"{s}: {', '.join(sorted(registered[s] - served[s]))} served nothing"
        for s in services
        if registered[s] - served[s]
    ]
    missing = [f"{s}: no instance scraped" for s in services if not registered[s]]
    return Claim(
        "instances",
        passed=not idle and not missing,
        value=f"instances that served / those up before the first fault: {shown}",
        problems=missing + idle,
        figures={f"{s}_served": len(served[s] & registered[s]) for s in services}
        | {f"{s}_registered": len(registered[s]) for s in services}
        | {f"{s}_replacements_served": len(served[s] - registered[s]) for s in services},
    )
