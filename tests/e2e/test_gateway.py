"""The system through its one entry: REST and gRPC through the real Envoy gateway, whose
endpoints come from the registry the service instances keep in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from order.v1 import order_service_pb2 as order_pb
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import ADDRESS_HEADER, routable_rpcs
from ordermesh.gateway.openapi import methods_of

from gateway import DESCRIPTOR_SET
from harness.rest import Rest
from harness.shop import PASSWORD, Shop, eventually
from harness.system import ADMIN_EMAIL
from services import catalogue

RPCS = routable_rpcs(DESCRIPTOR_SET.read_bytes(), catalogue.CATALOGUE)
INTERNAL_METHODS = [
    method
    for method in methods_of(DESCRIPTOR_SET.read_bytes()).values()
    if method.GetOptions().Extensions[options_pb2.access] == options_pb2.ACCESS_INTERNAL
]


@pytest.fixture
async def rest(gateway):
    client = Rest(gateway.url)
    yield client
    await client.close()


@pytest.fixture
async def shop_via_gateway(system, gateway):
    client = Shop(system, via=gateway.address)
    yield client
    await client.close()


async def test_every_rest_route_works_end_to_end(rest, shop):
    email = f"rest-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    registered = await rest.call(
        "Register", "POST", "/v1/users", {**credentials, "displayName": "Rosa"}
    )
    assert registered["profile"]["email"] == email
    tokens = (await rest.call("Login", "POST", "/v1/auth/login", credentials))["tokens"]
    token = tokens["accessToken"]
    me = await rest.call("GetProfile", "GET", "/v1/users/me", token=token)
    assert me["profile"]["userId"] == registered["profile"]["userId"]
    renamed = await rest.call(
        "UpdateProfile", "PATCH", "/v1/users/me", {"displayName": "Rosa L."}, token=token
    )
    assert renamed["profile"]["displayName"] == "Rosa L."
    await rest.call(
        "UpdatePreferences",
        "PATCH",
        "/v1/users/me/preferences",
        {"phoneNumber": "+4915112345678"},
        token=token,
    )
    preferences = await rest.call("GetPreferences", "GET", "/v1/users/me/preferences", token=token)
    assert preferences["preferences"]["phoneNumber"] == "+4915112345678"
    jwks = await rest.call("GetJwks", "GET", "/.well-known/jwks.json")
    assert jwks["keys"], jwks

    credentials = {"email": ADMIN_EMAIL, "password": shop.system.admin_password}
    admin = (await rest.call("Login", "POST", "/v1/auth/login", credentials))["tokens"][
        "accessToken"
    ]
    created = await rest.call(
        "CreateProduct",
        "POST",
        "/v1/products",
        {
            "sku": f"REST-{uuid.uuid4().hex[:8]}",
            "name": "Teapot",
            "price": {"amountMinor": "2500", "currencyCode": "EUR"},
            "initialStock": 3,
        },
        token=admin,
    )
    product_id = created["product"]["productId"]
    adjusted = await rest.call(
        "AdjustStock",
        "POST",
        f"/v1/products/{product_id}:adjustStock",
        {"delta": 2, "reason": "delivery"},
        token=admin,
    )
    assert adjusted["product"]["availableStock"] == "5"  # int64: a string in JSON
    listed = await rest.call("ListProducts", "GET", "/v1/products?pageSize=100")
    assert product_id in {p["productId"] for p in listed["products"]}
    fetched = await rest.call("GetProduct", "GET", f"/v1/products/{product_id}")
    assert fetched["product"]["name"] == "Teapot"

    placed = await rest.call(
        "PlaceOrder",
        "POST",
        "/v1/orders",
        {"idempotencyKey": str(uuid.uuid4()), "items": [{"productId": product_id, "quantity": 2}]},
        token=token,
    )
    order_id = placed["order"]["orderId"]

    async def approved() -> bool:
        order = await rest.call("GetOrder", "GET", f"/v1/orders/{order_id}", token=token)
        return order["order"]["status"] == "ORDER_STATUS_APPROVED"

    await eventually(approved, what="order approved")
    mine = await rest.call("ListOrders", "GET", "/v1/orders", token=token)
    assert [o["orderId"] for o in mine["orders"]] == [order_id]
    cancelled = await rest.call(
        "CancelOrder",
        "POST",
        f"/v1/orders/{order_id}:cancel",
        {"reason": "changed my mind"},
        token=token,
    )
    assert cancelled["order"]["status"] == "ORDER_STATUS_CANCELLED"
    history = await rest.call(
        "GetOrderHistory", "GET", f"/v1/orders/{order_id}/history", token=token
    )
    assert len(history["entries"]) >= 3

    async def notified() -> bool:
        listed = await rest.call("ListNotifications", "GET", "/v1/notifications", token=token)
        return bool(listed["notifications"])

    await eventually(notified, what="a notification listed")
    await operator_calls(rest, admin, order_id=order_id)
    refreshed = await rest.call(
        "RefreshToken", "POST", "/v1/auth/refresh", {"refreshToken": tokens["refreshToken"]}
    )
    await rest.call(
        "Logout", "POST", "/v1/auth/logout", {"refreshToken": refreshed["tokens"]["refreshToken"]}
    )

    assert rest.reached == {rpc.method for rpc in RPCS if rpc.http_verb}


async def operator_calls(rest: Rest, admin: str, *, order_id: str) -> None:
    """The operator API's REST routes, on the order service (its saga, messages, queues)."""
    ops = "/v1/ops/order"
    history = await rest.call(
        "GetMessageHistory", "GET", f"{ops}/message-history?eventIds={order_id}", token=admin
    )
    assert history == {"entries": []}  # an order id is no message's event id
    sagas = await rest.call("ListSagas", "GET", f"{ops}/sagas?pageSize=100", token=admin)
    assert "sagas" in sagas
    saga = await rest.call("GetSaga", "GET", f"{ops}/sagas/{order_id}", token=admin)
    # Cancelled after its approval: its steps were compensated.
    assert saga["saga"]["status"] == "SAGA_STATUS_COMPENSATED"
    correlation = saga["saga"]["correlationId"]
    history = await rest.call(
        "GetMessageHistory",
        "GET",
        f"{ops}/message-history?correlationId={correlation}",
        token=admin,
    )
    published = [e["type"] for e in history["entries"] if e["fate"] == "MESSAGE_FATE_PUBLISHED"]
    assert {"order.v1.OrderPlaced", "inventory.v1.ReserveStock"} <= set(published)
    # Actions on what is not stuck change nothing, and say so.
    why = {"reason": "an end-to-end test"}
    for rpc, verb in (("RetryCompensation", "retryCompensation"), ("ResolveSaga", "resolve")):
        unchanged = await rest.call(rpc, "POST", f"{ops}/sagas/{order_id}:{verb}", why, token=admin)
        assert unchanged["saga"]["status"] == "SAGA_STATUS_COMPENSATED"
    assert await rest.call("ListParkedMessages", "GET", f"{ops}/parked-messages", token=admin) == {
        "messages": []
    }
    unparked = await rest.call(
        "UnparkMessages",
        "POST",
        f"{ops}/parked-messages:unpark",
        {"eventIds": [order_id], **why},
        token=admin,
    )
    assert unparked == {"unparked": 0}
    letters = await rest.call("ListDeadLetters", "GET", f"{ops}/dead-letters", token=admin)
    queue = letters["queues"][0]["name"]
    assert queue.startswith("order.")
    assert queue.endswith(".dlq")
    for rpc, verb, count in (
        ("ReplayDeadLetters", "replay", "replayed"),
        ("DiscardDeadLetters", "discard", "discarded"),
    ):
        done = await rest.call(
            rpc,
            "POST",
            f"{ops}/dead-letters:{verb}",
            {"queue": queue, "eventIds": [order_id], **why},
            token=admin,
        )
        assert done == {count: 0}
    # A fault switch turned on for a method the service does not have (nothing is slowed: the
    # session's system is shared), then off; the flag file every process follows says so.
    switches = await rest.call("ListFaultSwitches", "GET", f"{ops}/fault-switches", token=admin)
    assert {s["name"] for s in switches["switches"]} >= {"rpc-latency", "handler-fails"}
    nothing = {"method": "NoSuchMethod", "settings": {"latencyMs": 5}, **why}
    path = f"{ops}/fault-switches/rpc-latency"
    on = await rest.call("TurnFaultSwitchOn", "POST", f"{path}:turnOn", nothing, token=admin)
    assert on["switch"]["where"] == {"service": "order", "method": "NoSuchMethod"}
    off = await rest.call("TurnFaultSwitchOff", "POST", f"{path}:turnOff", why, token=admin)
    assert not off["switch"].get("on")


async def test_every_routable_rpc_answers_over_grpc_through_the_gateway(gateway):
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        for rpc in RPCS:
            call = channel.unary_unary(rpc.path)
            # An API several services serve is routed by the service the call names.
            named = [(ADDRESS_HEADER, rpc.cluster)] if rpc.addressed else []
            try:
                await call(b"", timeout=10, metadata=named)
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details()
            assert code not in (
                grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
            ), f"{rpc.path}: {code.name} {details}"


async def test_an_order_over_grpc_through_the_gateway(shop_via_gateway):
    shop = shop_via_gateway
    ada = await shop.register()
    product = await shop.product(stock=2)
    order = await shop.place(ada, [(product.product_id, 1)])
    settled = await shop.settled(ada, order.order_id)
    assert settled.status == order_pb.ORDER_STATUS_APPROVED
    assert await shop.available(product.product_id) == 1


async def test_errors_are_json_with_the_grpc_status_and_message(rest):
    weak = await rest.call(
        "Register", "POST", "/v1/users", {"email": "w@example.com", "password": "short"}, expect=400
    )
    assert weak["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "password" in weak["message"]
    no_token = await rest.call("ListOrders", "GET", "/v1/orders", expect=401)
    assert no_token["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    missing = await rest.call("GetProduct", "GET", "/v1/products/no-such-product", expect=404)
    assert missing == {
        "code": 5,
        "message": "product 'no-such-product' does not exist",
        "details": [],
    }
    unknown = await rest.call("-", "GET", "/v1/nothing/here", expect=404)
    assert unknown["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    typo = await rest.call("-", "GET", "/v1/products?pagesize=5", expect=400)
    assert typo["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "pagesize" in typo["message"]
    async with rest.http.post(rest.base_url + "/v1/auth/login", data=b"{not json") as response:
        assert response.status == 400
        assert (await response.json())["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_another_users_order_is_not_found_through_rest(rest, shop):
    owner, other = await shop.register(), await shop.register()
    product = await shop.product(stock=1)
    order = await shop.place(owner, [(product.product_id, 1)])
    found = await rest.call(
        "GetOrder", "GET", f"/v1/orders/{order.order_id}", token=other.access_token, expect=404
    )
    assert found["code"] == grpc.StatusCode.NOT_FOUND.value[0]


UNROUTABLE = [
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/order.v1.OrderService/NoSuchMethod",
    *(f"/{m.containing_service.full_name}/{m.name}" for m in INTERNAL_METHODS),
]


async def test_envoys_route_table_refuses_what_is_not_routable_even_with_an_admins_token(
    gateway, shop
):
    """The route table answers these itself (a direct response), before any auth check: no
    request reaches the auth service or a service, whatever the token says."""
    admin = await shop.admin()
    clusters = ["auth", *(service.name for service in catalogue.CATALOGUE.domain_services())]
    before = {c: gateway.envoy.counter(f"cluster.{c}.upstream_rq_total") for c in clusters}
    direct = gateway.envoy.counter("http.gateway.rq_direct_response")

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        for path in UNROUTABLE:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(path)(b"", metadata=admin.metadata, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED, path

    assert gateway.envoy.counter("http.gateway.rq_direct_response") == direct + len(UNROUTABLE)
    after = {c: gateway.envoy.counter(f"cluster.{c}.upstream_rq_total") for c in clusters}
    assert after == before


async def test_a_killed_instance_leaves_rotation_while_reads_keep_answering(system, gateway, rest):
    """A second inventory instance (this test's own) joins through the registry, is SIGKILLed
    under steady reads, and leaves Envoy's endpoints within its registry TTL; no read fails."""
    extra = system.add_instance(
        "inventory", "inventory-extra", REGISTRY_TTL_S="2", HEARTBEAT_INTERVAL_S="0.5"
    )
    try:
        await asyncio.to_thread(gateway.wait_for_healthy, 2, clusters=["inventory"])
        assert extra.address in dict(gateway.endpoints()["inventory"])
        failures: list[str] = []
        served = 0

        async def reads(seconds: float) -> None:
            nonlocal served
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                async with rest.http.get(rest.base_url + "/v1/products?pageSize=1") as response:
                    if response.status == 200:
                        served += 1
                    else:
                        failures.append(f"{response.status} {await response.text()}")
                await asyncio.sleep(0.02)

        steady = asyncio.create_task(reads(6.0))
        await asyncio.sleep(1.5)
        extra.kill()
        killed = time.monotonic()

        def gone() -> bool:
            return extra.address not in dict(gateway.endpoints()["inventory"])

        # A bound on waiting, not a timing claim: the lease (TTL 2 s) decides when it leaves.
        await eventually(lambda: asyncio.to_thread(gone), timeout_s=15, what="endpoint removed")
        print(f"the killed instance left Envoy's endpoints {time.monotonic() - killed:.1f} s after")
        await steady
    finally:
        extra.kill()
    assert failures == []
    assert served > 100
