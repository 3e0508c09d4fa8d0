"""The system keeps answering while instances die: steady traffic through the gateway while one
of the two instances of every service is SIGKILLed every 10 s, once the previous round's
victims serve again (they are restarted by the supervisor, as `make up` does), then while Redis
(the registry) is stopped for 20 s.

Answers are not all: the effects are reconciled too. Every order the gateway accepted reaches
a final state, once (one order per idempotency key, in the order service's store); the stock
taken and the credit reserved are those of the approved orders; every instance killed was
running when it was killed, and is serving again at the end.

This module runs its own Redis, two instances of every service and a gateway: it kills them."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import charts
from harness.gateway import LocalGateway
from harness.shop import Shop
from harness.supervisor import Supervisor
from harness.system import UNREACHED_RATE_LIMITS, UNREACHED_READS_PER_CLIENT, System
from tests.e2e.worlds import STOCK, Traffic, customer, own_system

TARGET = 0.999  # the floor; the goal is 0.9999


@pytest.fixture(scope="module")
def world(rabbitmq, tmp_path_factory):
    with own_system(
        rabbitmq,
        tmp_path_factory.mktemp("failover"),
        **UNREACHED_RATE_LIMITS,
        # Out of the registry within 3 s of dying without a word.
        REGISTRY_TTL_S="3",
        HEARTBEAT_INTERVAL_S="1",
    ) as (redis, system):
        gateway = LocalGateway(
            system.directory.parent / "gateway",
            redis_url=redis.url,
            secrets=system.gateway_secrets,
            reads_per_client_per_s=UNREACHED_READS_PER_CLIENT,
        )
        supervisor = Supervisor(min_backoff_s=0.5, max_backoff_s=2.0)
        try:
            pairs = {
                service: [system.processes[service], system.add_instance(service, f"{service}-2")]
                for service in system.services
            }
            gateway.start()
            gateway.wait_for_healthy(2)
            for pair in pairs.values():
                for instance in pair:
                    supervisor.watch(instance.process)
            supervisor.start()
            yield redis, system, gateway, pairs
        finally:
            supervisor.stop()
            gateway.stop()


SERVED = ("user", "order", "inventory")  # the clusters the traffic's requests are sent to


def serving_again(gateway: LocalGateway, timeout_s: float = 60.0) -> None:
    """Until both instances of every cluster are healthy, and those the traffic's requests are
    sent to have each answered one since they came back. Healthy is not enough: Envoy sends
    nothing to an endpoint it has just added until its next health check (a run lost 21
    requests killing the partner of an instance 0.7 s after it came back, every retry landing
    on the dead one). Envoy counts per endpoint, and afresh for one that came back."""
    deadline = time.monotonic() + timeout_s
    while True:
        gateway.wait_for_healthy(2, timeout_s=timeout_s)
        answered: Counter[tuple[str, str]] = Counter()
        for line in gateway.envoy.admin("/clusters").splitlines():
            cluster, _, rest = line.partition("::")
            address, _, stat = rest.partition("::")
            if cluster in SERVED and stat.startswith("rq_success::"):
                answered[(cluster, address)] = int(stat.rpartition("::")[2])
        if len(answered) == 2 * len(SERVED) and all(answered.values()):
            return
        assert time.monotonic() < deadline, f"not serving again in time: {answered}"
        time.sleep(0.1)


def rows(store: Path, sql: str, *parameters: object) -> list[tuple]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
        return db.execute(sql, parameters).fetchall()


async def reconcile(
    system: System, traffic: Traffic, user_id: str, product_id: str
) -> Counter[str]:
    """The effects of the traffic, checked against what the test itself sent and was told."""
    orders = system.directory / "order" / "store.sqlite3"

    def statuses() -> dict[str, str]:
        found = rows(orders, "SELECT id, json_extract(doc, '$.status'), "
                     "json_extract(doc, '$.idempotency') FROM doc_orders")  # fmt: skip
        return {id: status for id, status, key in found if key.split("/", 1)[1] in keys}

    keys = set(traffic.keys)
    deadline = time.monotonic() + 120
    while any(status == "PENDING" for status in statuses().values()):
        assert time.monotonic() < deadline, "orders still PENDING two minutes after the kills"
        await asyncio.sleep(0.5)
    final = statuses()
    assert set(traffic.accepted) <= set(final), "an accepted order is missing"
    per_key = Counter(
        key.split("/", 1)[1]
        for (key,) in rows(orders, "SELECT json_extract(doc, '$.idempotency') FROM doc_orders")
        if key.split("/", 1)[1] in keys
    )
    assert set(per_key.values()) <= {1}, "two orders for one idempotency key"
    outcome = Counter(final.values())
    assert set(outcome) <= {"APPROVED", "REJECTED"}, outcome
    shop = Shop(system)
    try:
        available = await shop.available(product_id)
    finally:
        await shop.close()
    assert available == STOCK - outcome["APPROVED"], "stock taken is not the approved orders'"
    [(reserved,)] = rows(
        system.directory / "user" / "store.sqlite3",
        "SELECT json_extract(doc, '$.credit_reserved_minor') FROM doc_users WHERE id = ?",
        user_id,
    )
    assert reserved == outcome["APPROVED"], "credit reserved is not the approved orders' (1 each)"
    return outcome


async def test_traffic_keeps_flowing_while_instances_are_killed(world, record_figure):
    _, system, gateway, pairs = world
    token, user_id, product_id = await customer(system)
    traffic = Traffic(gateway.url, token, product_id)

    kills = 0
    moments: list[tuple[float, str]] = []
    waits: list[float] = []
    done = asyncio.Event()

    async def killing() -> None:
        nonlocal kills
        for round_ in range(5):
            await asyncio.sleep(10)
            # Individual failures, one at a time: the last round's victims serve again before
            # their partners die (a kill sooner takes a service down entirely).
            waited = time.perf_counter()
            await asyncio.to_thread(serving_again, gateway)
            waits.append(time.perf_counter() - waited)
            moments.append((time.perf_counter() - traffic.started, f"kill {round_ + 1}"))
            for pair in pairs.values():
                victim = pair[round_ % 2]
                assert victim.process.running, f"{victim.process.name} was not restarted"
                victim.kill()  # SIGKILL; the supervisor starts it again
                kills += 1
        await asyncio.sleep(10)
        done.set()

    await asyncio.gather(traffic.run(120, until=done), killing())
    rate = traffic.success_rate()
    picture = charts.timeline(
        "failover.png",
        traffic.timeline,
        marks=moments,
        title=f"One of two instances of each service SIGKILLed every 10 s: {rate:.3%} answered",
    )
    await asyncio.to_thread(gateway.wait_for_healthy, 2)  # every killed instance serves again
    outcome = await reconcile(system, traffic, user_id, product_id)
    print(f"failover: {kills} kills, {traffic.outcomes} success {rate:.4%}; orders {outcome}; "
          f"failures: {traffic.failures[:10]}")  # fmt: skip
    ejected = {
        cluster: gateway.envoy.counter(
            f"cluster.{cluster}.outlier_detection.ejections_enforced_total"
        )
        for cluster in ("auth", *SERVED)
    }
    print(f"outlier ejections: {ejected}; waited for the last victims before each round: "
          f"{', '.join(f'{w:.2f} s' for w in waits)}; picture: {picture}")  # fmt: skip
    answered, sent = traffic.outcomes["ok"], sum(traffic.outcomes.values())
    record_figure(
        f"failover: {answered:,} of {sent:,} answered ({rate:.3%}; floor {TARGET:.1%}), "
        f"{kills} kills",
        answered=answered,
        sent=sent,
        kills=kills,
    )
    assert kills == 5 * len(pairs)
    assert rate >= TARGET, f"{traffic.outcomes} {ejected}: {traffic.failures[:20]}"


async def test_traffic_keeps_flowing_while_redis_is_stopped(world, record_figure):
    redis, system, gateway, _ = world
    await asyncio.to_thread(gateway.wait_for_healthy, 2)  # everyone back from the last test
    token, user_id, product_id = await customer(system)
    traffic = Traffic(gateway.url, token, product_id)

    moments: list[tuple[float, str]] = []

    async def outage() -> None:
        await asyncio.sleep(2)
        moments.append((time.perf_counter() - traffic.started, "Redis stopped"))
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(20)
        moments.append((time.perf_counter() - traffic.started, "Redis started"))
        await asyncio.to_thread(redis.start)

    await asyncio.gather(traffic.run(26), outage())
    rate = traffic.success_rate()
    picture = charts.timeline(
        "redis-outage.png",
        traffic.timeline,
        marks=moments,
        title=f"Redis (registry, rate limits) stopped for 20 s: {rate:.3%} answered",
    )
    await reconcile(system, traffic, user_id, product_id)
    print(f"redis outage: {traffic.outcomes} success {rate:.4%}; "
          f"failures: {traffic.failures[:10]}; picture: {picture}")  # fmt: skip
    answered, sent = traffic.outcomes["ok"], sum(traffic.outcomes.values())
    record_figure(
        f"Redis stopped 20 s: {answered:,} of {sent:,} answered ({rate:.3%})",
        answered=answered,
        sent=sent,
    )
    assert rate >= TARGET, f"{traffic.outcomes}: {traffic.failures[:20]}"
