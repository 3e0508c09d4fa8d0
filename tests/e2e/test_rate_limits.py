"""Rate limits at the gateway: global limits shared by every gateway instance (the rate-limit
service, counters in Redis), Envoy's local limit as a floor, and what happens without Redis.

This module runs its own system, Redis and two gateways: it stops its Redis, and its limits
are tight enough to be reached, which the session's shared system must never be."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping

import aiohttp
import grpc
import pytest

from harness.gateway import LocalGateway
from harness.shop import Shop
from tests.e2e.worlds import own_system

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
SIGN_IN_PER_MINUTE = 6
WRITES_PER_USER_PER_MINUTE = 4
FLOOR_PER_SECOND = 20


@pytest.fixture(scope="module")
def world(rabbitmq, tmp_path_factory):
    with own_system(
        rabbitmq,
        tmp_path_factory.mktemp("rate-limits"),
        RATE_LIMIT_SIGN_IN=f"{SIGN_IN_PER_MINUTE}/m",
        RATE_LIMIT_WRITE_PER_USER=f"{WRITES_PER_USER_PER_MINUTE}/m",
    ) as (redis, system):
        directory = system.directory.parent
        gateways = [
            LocalGateway(directory / "gateway-a", redis_url=redis.url, graphql=True),
            LocalGateway(
                directory / "gateway-b", redis_url=redis.url, local_limit_per_s=FLOOR_PER_SECOND
            ),
        ]
        try:
            for gateway in gateways:
                gateway.start()
                gateway.wait_for_healthy()
            yield redis, system, gateways
        finally:
            for gateway in gateways:
                gateway.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def a_fresh_minute() -> None:
    """Waits, if need be, so that what follows happens within one window of a per-minute limit."""
    left = 60 - time.time() % 60
    if left < 15:
        await asyncio.sleep(left + 0.1)


async def login(http, gateway, email: str) -> tuple[int, Mapping[str, str], dict]:
    async with http.post(
        f"{gateway.url}/v1/auth/login", json={"email": email, "password": "wrong password!"}
    ) as response:
        return response.status, response.headers, await response.json(content_type=None)


async def test_sign_in_attempts_are_limited_per_address_across_gateways(world, http):
    _, _, (a, b) = world
    await a_fresh_minute()
    email = f"nobody-{uuid.uuid4().hex[:6]}@example.com"
    statuses = [(await login(http, gateway, email))[0] for gateway in (a, b, a, b, a, b)]
    assert statuses == [401] * SIGN_IN_PER_MINUTE  # wrong password, not yet limited
    for gateway in (a, b):
        status, headers, body = await login(http, gateway, email)
        assert status == 429
        assert body["code"] == RESOURCE_EXHAUSTED
        assert "too many requests" in body["message"]
        assert 0 < int(headers["retry-after"]) <= 60


async def test_writes_are_limited_per_user(world, http):
    _, system, (a, b) = world
    shop = Shop(system)
    try:
        ada, bob = await shop.register(), await shop.register()
    finally:
        await shop.close()
    await a_fresh_minute()

    async def rename(gateway, session, name: str) -> int:
        async with http.patch(
            f"{gateway.url}/v1/users/me",
            json={"displayName": name},
            headers={"authorization": f"Bearer {session.access_token}"},
        ) as response:
            return response.status

    ada_statuses = [await rename(g, ada, f"Ada {i}") for i, g in enumerate((a, b, a, b, a))]
    assert ada_statuses == [200] * WRITES_PER_USER_PER_MINUTE + [429]
    assert await rename(b, bob, "Bob") == 200  # another user's budget is their own
    async with http.get(
        f"{a.url}/v1/users/me", headers={"authorization": f"Bearer {ada.access_token}"}
    ) as response:
        assert response.status == 200  # reads are not counted


PLACE = """
mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }
"""


async def graphql(http, gateway, query: str, token: str = "", **variables) -> tuple[int, dict]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body = {"query": query, "variables": variables}
    async with http.post(f"{gateway.url}/graphql", json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_graphql_mutations_spend_the_same_write_budget_as_rest(world, http):
    _, system, (a, _) = world
    shop = Shop(system)
    try:
        ada = await shop.register()
        product = await shop.product(price_minor=100, stock=100)
    finally:
        await shop.close()
    await a_fresh_minute()

    async def place() -> tuple[int, dict]:
        order = {
            "idempotencyKey": str(uuid.uuid4()),
            "items": [{"productId": product.product_id, "quantity": 1}],
            "deliveryAddress": {"recipient": "Ada", "addressLines": ["Main St 1"],
                                "locality": "Berlin", "regionCode": "DE"},
        }  # fmt: skip
        return await graphql(http, a, PLACE, ada.access_token, input=order)

    async with http.patch(
        f"{a.url}/v1/users/me",
        json={"displayName": "Ada"},
        headers={"authorization": f"Bearer {ada.access_token}"},
    ) as response:
        assert response.status == 200
    placed = [await place() for _ in range(WRITES_PER_USER_PER_MINUTE - 1)]
    assert all("errors" not in answer for _, answer in placed), placed
    _, refused = await place()
    (error,) = refused["errors"]
    assert error["extensions"]["code"] == "RESOURCE_EXHAUSTED", refused
    assert error["extensions"]["grpcStatus"] == RESOURCE_EXHAUSTED
    # Queries are reads, not writes.
    status, me = await graphql(http, a, "{ me { displayName } }", ada.access_token)
    assert (status, me) == (200, {"data": {"me": {"displayName": "Ada"}}})


async def test_graphql_reads_are_limited_per_client_as_rest_reads_are(world, http):
    _, _, (a, _) = world
    burst = a.config.read_burst_per_client
    query = "{ products(first: 1) { products { name } } }"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    ) as one:
        answers = await asyncio.gather(*(graphql(one, a, query) for _ in range(2 * burst)))
    limited = [answer for status, answer in answers if status == 429]
    assert limited, "no request was limited"
    (error,) = limited[0]["errors"]
    assert error["extensions"] == {"code": "RESOURCE_EXHAUSTED", "grpcStatus": RESOURCE_EXHAUSTED}
    assert (await graphql(http, a, query))[0] == 200  # another client's reads are their own


async def test_the_local_limit_is_a_floor_per_gateway(world, http):
    _, _, (_, b) = world

    async def browse() -> int:
        async with http.get(f"{b.url}/v1/products?pageSize=1") as response:
            return response.status

    await asyncio.sleep(1.1)  # a full bucket
    statuses = await asyncio.gather(*(browse() for _ in range(FLOOR_PER_SECOND * 2)))
    assert statuses.count(429) >= FLOOR_PER_SECOND // 2
    assert statuses.count(200) >= FLOOR_PER_SECOND // 2


async def test_without_redis_the_global_limits_fail_open_and_traffic_continues(world, http):
    """Documented behaviour: the rate-limit service cannot count without Redis, and the gateway
    lets requests through (Envoy's rate-limit filter fails open); the registry's last endpoints
    keep serving. The local floor still applies."""
    redis, _, (a, _) = world
    email = f"nobody-{uuid.uuid4().hex[:6]}@example.com"
    redis.kill()
    try:
        statuses = [(await login(http, a, email))[0] for _ in range(SIGN_IN_PER_MINUTE + 3)]
        async with http.get(f"{a.url}/v1/products?pageSize=1") as response:
            assert response.status == 200
    finally:
        redis.start()
    assert statuses == [401] * (SIGN_IN_PER_MINUTE + 3)


async def test_reads_are_limited_per_client_so_one_cannot_get_everyone_limited(world, http):
    """Reads had only the shared floor: one client could use it up for everyone. Now each
    verified user, and each address without a token, has a bucket of its own in each gateway
    (here from 127.0.0.2 and 127.0.0.3: loopback addresses of their own)."""
    _, system, (a, _) = world
    shop = Shop(system)
    try:
        ada, bob = await shop.register(), await shop.register()
    finally:
        await shop.close()
    burst = a.config.read_burst_per_client

    async def profile(session) -> int:
        headers = {"authorization": f"Bearer {session.access_token}"}
        async with http.get(f"{a.url}/v1/users/me", headers=headers) as response:
            return response.status

    statuses = await asyncio.gather(*(profile(ada) for _ in range(2 * burst)))
    assert statuses.count(429) > 0
    assert await profile(bob) == 200  # another user's reads are their own

    async def browse(client: aiohttp.ClientSession) -> int:
        async with client.get(f"{a.url}/v1/products?pageSize=1") as response:
            return response.status

    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as one,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))) as two,
    ):
        statuses = await asyncio.gather(*(browse(one) for _ in range(2 * burst)))
        assert statuses.count(429) > 0
        assert await browse(two) == 200
