"""The systems the benches run: every service of the catalogue (the gateway's auth and rate-limit
services included) with N instances each, registered in a private Redis, behind the gateway
(Envoy and its agent), on a vhost of a private RabbitMQ node, at the log level the services ship
with (`running_system`), and a shop of customers and products to order from (`make up` itself
is harness.running.make_up)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from ordermesh.config import ServiceSettings
from ordermesh.runtime import BackboneSettings

from bench.machine import LOG_LEVEL
from harness import PrivateRabbitMQ, PrivateRedis
from harness.gateway import LocalGateway
from harness.postgres import MAX_CONNECTIONS, PrivatePostgres
from harness.shop import Session, Shop
from harness.system import UNREACHED_RATE_LIMITS, UNREACHED_READS_PER_CLIENT, System
from services import catalogue

__all__ = ["PASSWORD", "Running", "rest_customer", "running_system", "shop_of"]

PASSWORD = "correct horse battery"


@dataclass
class Running:
    """A system of `count` instances of every service behind a gateway, and its parts."""

    system: System
    gateway: LocalGateway
    redis: PrivateRedis
    postgres: PrivatePostgres | None
    ready_s: float


@contextlib.asynccontextmanager
async def running_system(
    directory: Path,
    broker: PrivateRabbitMQ,
    store: str,
    count: int,
    *,
    label: str = "",
    log_level: str = LOG_LEVEL,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Running]:
    """A fresh system (its own Redis, PostgreSQL for `store` "postgres", a vhost of `broker`),
    every instance registered and routed by the gateway; removed on exit. The rate limits are
    out of reach unless `env` (added to the services' environment) sets them."""
    label = label or f"{store}-{count}"
    postgres = PrivatePostgres(directory / f"postgres-{label}") if store == "postgres" else None
    # Every instance's pool within PostgreSQL's connections, with room for the bench's own:
    # the services' default up to 4 instances, 4 each at 10.
    default_pool = BackboneSettings.model_fields["store_pool_size"].default
    pool_size = min(default_pool, catalogue.CATALOGUE.pool_size_within(MAX_CONNECTIONS - 20, count))
    redis = PrivateRedis(directory / f"redis-{label}")
    redis.start()
    if postgres is not None:
        postgres.start()
    system = System(
        directory / f"system-{label}",
        amqp_url=broker.add_vhost(label),
        env={
            "REDIS_URL": redis.url,
            # Credit is not what is measured: no order should be refused for it.
            "CREDIT_LIMIT_MINOR": str(10**12),
            "LOG_LEVEL": log_level,
            "STORE_POOL_SIZE": str(pool_size),
            # The services' own default (the test systems check health every 0.5 s): at 10
            # instances of everything, 0.5 s cost 0.63 cores of 2 with no traffic at all.
            "HEALTH_INTERVAL_S": str(ServiceSettings.model_fields["health_interval_s"].default),
            **UNREACHED_RATE_LIMITS,
            **(env or {}),
        },
        separate_sinks=True,
        postgres=postgres,
    )
    gateway = LocalGateway(
        directory / f"gateway-{label}",
        redis_url=redis.url,
        secrets=system.gateway_secrets,
        reads_per_client_per_s=UNREACHED_READS_PER_CLIENT,
        local_limit_per_s=100_000,
    )
    try:
        started = time.perf_counter()
        gateway.start()
        await asyncio.to_thread(system.start)
        await asyncio.gather(*(
            asyncio.to_thread(system.add_instance, service, f"{service}-{n}")
            for service in system.services for n in range(2, count + 1)
        ))  # fmt: skip
        await asyncio.to_thread(gateway.wait_for_healthy, count, timeout_s=300)
        yield Running(system, gateway, redis, postgres, time.perf_counter() - started)
    finally:
        try:
            system.stop()
            gateway.stop()
        finally:
            redis.remove()
            if postgres is not None:
                postgres.remove()


async def shop_of(
    system: System, gateway: LocalGateway, *, users: int, products: int
) -> tuple[Shop, list[Session], list[str]]:
    """A client of the gateway, `users` customers and `products` products in ample stock.
    Orders spread over products, as a shop's are: one product for all of them makes its stock
    one row that every ReserveStock updates (on PostgreSQL, instances then meet on it and
    retry)."""
    shop = Shop(system, via=gateway.address)
    chosen = [
        (await shop.product(price_minor=100, stock=10**9)).product_id for _ in range(products)
    ]
    customers = [await shop.register() for _ in range(users)]
    return shop, customers, chosen


async def rest_customer(http: aiohttp.ClientSession, gateway: str) -> dict[str, str]:
    """A new customer's authorization header."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    user = {"email": email, "password": PASSWORD, "displayName": "Bench"}
    async with http.post(f"{gateway}/v1/users", json=user) as answer:
        assert answer.status == 200, await answer.text()
    login = {"email": email, "password": PASSWORD}
    async with http.post(f"{gateway}/v1/auth/login", json=login) as answer:
        tokens = (await answer.json())["tokens"]
    return {"authorization": f"Bearer {tokens['accessToken']}"}
