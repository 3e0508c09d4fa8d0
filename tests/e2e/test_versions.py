"""Two major versions of one API, served together (docs/versioning.md): order.v1 and order.v2
are the same orders of the same service and store, through the real gateway; v1 answers tell
their callers it is deprecated, and until when it is served."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import grpc
import pytest
from order.v1 import order_service_pb2 as order_v1
from order.v1 import order_service_pb2_grpc as order_v1_grpc
from order.v2 import order_service_pb2 as order_v2
from order.v2 import order_service_pb2_grpc as order_v2_grpc
from ordermesh.gateway.contracts import routable_rpcs

from gateway import DESCRIPTOR_SET
from harness.rest import Rest
from harness.shop import eventually
from services.catalogue import CATALOGUE

V2 = "order.v2.OrderService"
ADDRESS = {
    "recipient": "Ada Lovelace",
    "addressLines": ["Unter den Linden 1", "3rd floor"],
    "locality": "Berlin",
    "postalCode": "10117",
    "regionCode": "DE",
}


@pytest.fixture
async def rest(gateway):
    client = Rest(gateway.url)
    yield client
    await client.close()


async def test_a_v1_client_and_a_v2_client_see_the_same_orders(rest, shop, system):
    ada = await shop.register(name="Ada")
    token = ada.access_token
    product = await shop.product(price_minor=1250, stock=10)

    placed_v1 = await rest.call(
        "PlaceOrder",
        "POST",
        "/v1/orders",
        {
            "idempotencyKey": str(uuid.uuid4()),
            "items": [{"productId": product.product_id, "quantity": 1}],
        },
        token=token,
    )
    placed_v2 = await rest.call(
        "PlaceOrder",
        "POST",
        "/v2/orders",
        {
            "idempotencyKey": str(uuid.uuid4()),
            "items": [{"productId": product.product_id, "quantity": 3}],
            "deliveryAddress": ADDRESS,
        },
        token=token,
    )
    first, second = placed_v1["order"]["orderId"], placed_v2["order"]["orderId"]
    assert placed_v2["order"]["state"] == "ORDER_STATE_PENDING"

    async def both_approved() -> bool:
        listed = await rest.call("ListOrders", "GET", "/v2/orders", token=token)
        return {o["state"] for o in listed["orders"]} == {"ORDER_STATE_APPROVED"}

    await eventually(both_approved, what="both orders approved")
    v1 = (await rest.call("ListOrders", "GET", "/v1/orders", token=token))["orders"]
    v2 = (await rest.call("ListOrders", "GET", "/v2/orders", token=token))["orders"]

    # The same orders, newest first, in either version's shape.
    assert [o["orderId"] for o in v1] == [o["orderId"] for o in v2] == [second, first]
    for old, new in zip(v1, v2, strict=True):
        assert old["status"].removeprefix("ORDER_STATUS_") == new["state"].removeprefix(
            "ORDER_STATE_"
        )
        assert old["total"] == new["total"]
        assert old["createTime"] == new["createTime"]
        assert [
            (line["productId"], line["quantity"], line["unitPrice"]) for line in old["lines"]
        ] == [(item["productId"], item["quantity"], item["unitPrice"]) for item in new["items"]]
    # What only v2 has: the address of the order placed through it, and the line totals.
    assert v2[0]["deliveryAddress"] == ADDRESS
    assert "deliveryAddress" not in v2[1]
    assert v2[0]["items"][0]["lineTotal"] == {"amountMinor": "3750", "currencyCode": "EUR"}
    assert "deliveryAddress" not in v1[0]

    # A change through one version is seen through the other.
    cancelled = await rest.call(
        "CancelOrder", "POST", f"/v2/orders/{first}:cancel", {"reason": "v2 cancels"}, token=token
    )
    assert cancelled["order"]["state"] == "ORDER_STATE_CANCELLED"
    seen = await rest.call("GetOrder", "GET", f"/v1/orders/{first}", token=token)
    assert seen["order"]["status"] == "ORDER_STATUS_CANCELLED"
    assert seen["order"]["statusReason"] == "v2 cancels"
    got = await rest.call("GetOrder", "GET", f"/v2/orders/{second}", token=token)
    assert got["order"]["deliveryAddress"] == ADDRESS

    async def history(version: str) -> list:
        path = f"/{version}/orders/{first}/history"
        return (await rest.call("GetOrderHistory", "GET", path, token=token))["entries"]

    async def compensated() -> bool:  # the cancellation's releases, after its answer
        return (await history("v1"))[-1]["kind"] == "HISTORY_ENTRY_KIND_SAGA_ENDED"

    await eventually(compensated, what="the cancelled order's saga ended")
    assert await history("v1") == await history("v2")

    v2_methods = {
        r.method for r in routable_rpcs(DESCRIPTOR_SET.read_bytes(), CATALOGUE) if r.service == V2
    }
    assert v2_methods <= rest.reached

    # The approval told by the notification service, from order.v2.OrderApproved: where it goes.
    def approval() -> str:
        mails = [m for m in system.mail.to(ada.email) if second[:8] in m["Subject"]]
        return mails[0].get_content() if mails else ""

    body = await eventually(approval, what="the approval email of the v2 order")
    assert "3 x" in body
    delivery = ["Ada Lovelace", "Unter den Linden 1", "3rd floor", "10117 Berlin", "DE"]
    assert "It will be delivered to:" + "".join(f"\n  {line}" for line in delivery) in body


async def test_v1_answers_say_it_is_deprecated_and_when_it_ends_and_v2_answers_do_not(
    rest, shop, gateway
):
    ada = await shop.register()
    await rest.call("ListOrders", "GET", "/v1/orders", token=ada.access_token)
    deprecation, sunset = rest.headers["deprecation"], rest.headers["sunset"]
    # RFC 9745: a structured-field date; RFC 8594: an HTTP date, after the deprecation.
    deprecated_at = datetime.fromtimestamp(int(deprecation.removeprefix("@")), UTC)
    assert deprecation.startswith("@")
    assert parsedate_to_datetime(sunset) > deprecated_at
    # Errors too: a caller of a deprecated API learns it whatever it is answered.
    await rest.call("GetOrder", "GET", "/v1/orders/nope", token=ada.access_token, expect=404)
    assert rest.headers["deprecation"] == deprecation

    await rest.call("ListOrders", "GET", "/v2/orders", token=ada.access_token)
    assert "deprecation" not in rest.headers
    assert "sunset" not in rest.headers
    await rest.call("ListProducts", "GET", "/v1/products")
    assert "deprecation" not in rest.headers  # inventory.v1 is not deprecated

    # gRPC callers get the same, as initial metadata.
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call = order_v1_grpc.OrderServiceStub(channel).ListOrders(
            order_v1.ListOrdersRequest(), metadata=ada.metadata, timeout=10
        )
        await call
        metadata = dict(await call.initial_metadata())
    assert metadata["deprecation"] == deprecation
    assert metadata["sunset"] == sunset


async def test_v2_requires_a_delivery_address_and_says_what_is_wrong_with_one(rest, shop, gateway):
    ada = await shop.register()
    product = await shop.product()
    items = [{"productId": product.product_id, "quantity": 1}]

    def order(**fields):
        return {"idempotencyKey": str(uuid.uuid4()), "items": items, **fields}

    missing = await rest.call(
        "PlaceOrder", "POST", "/v2/orders", order(), token=ada.access_token, expect=400
    )
    assert missing["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert missing["message"] == "delivery_address is required in order.v2"
    no_town = await rest.call(
        "PlaceOrder",
        "POST",
        "/v2/orders",
        order(deliveryAddress={**ADDRESS, "locality": " "}),
        token=ada.access_token,
        expect=400,
    )
    assert no_town["message"] == "delivery_address: locality required"
    bad_region = await rest.call(
        "PlaceOrder",
        "POST",
        "/v2/orders",
        order(deliveryAddress={**ADDRESS, "regionCode": "de"}),
        token=ada.access_token,
        expect=400,
    )
    assert "region_code" in bad_region["message"]
    too_many_lines = await rest.call(
        "PlaceOrder",
        "POST",
        "/v2/orders",
        order(deliveryAddress={**ADDRESS, "addressLines": ["a", "b", "c", "d"]}),
        token=ada.access_token,
        expect=400,
    )
    assert too_many_lines["message"] == "delivery_address.address_lines: 4 items, at most 3"

    # Over gRPC through the gateway, the same refusal.
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        orders = order_v2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.PlaceOrder(
                order_v2.PlaceOrderRequest(
                    idempotency_key=str(uuid.uuid4()),
                    items=[order_v2.NewItem(product_id=product.product_id, quantity=1)],
                ),
                metadata=ada.metadata,
                timeout=10,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = await rest.call("ListOrders", "GET", "/v2/orders", token=ada.access_token)
    assert listed["orders"] == [], "a refused order was placed"
