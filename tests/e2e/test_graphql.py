"""GraphQL beside REST and gRPC: the federation gateway (Hive Gateway) behind Envoy's /graphql,
serving the supergraph composed from the user, inventory and order subgraphs, each a real
service process; tokens checked as on REST, errors with their gRPC status in `extensions`,
entities batched (counted at Envoy's subgraph listener and in the subgraphs' metrics), depth
and cost limits, and mutations counted against the global write limits."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from ordermesh.registry import Registry

from harness.shop import eventually

ADDRESS = {"recipient": "Ada", "addressLines": ["Main St 1"], "locality": "Berlin",
           "regionCode": "DE"}  # fmt: skip
ORDERS = """
{ me { orders(first: 20) {
  orderId items { quantity product { name price { amountMinor currencyCode } } }
} } }
"""
PLACE = """
mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { orderId state total { amountMinor } deliveryAddress { locality } }
}
"""
CANCEL = """
mutation($id: ID!) { cancelOrder(orderId: $id, reason: "changed my mind") { orderId state } }
"""


@pytest.fixture
async def graphql(gateway):
    async with aiohttp.ClientSession() as http:

        async def ask(query: str, token: str = "", headers=None, **variables) -> tuple[int, dict]:
            sent = {"authorization": f"Bearer {token}"} if token else {}
            async with http.post(
                f"{gateway.url}/graphql",
                json={"query": query, "variables": variables},
                headers={**sent, **(headers or {})},
            ) as response:
                assert response.content_type == "application/json", await response.text()
                return response.status, await response.json()

        yield ask


@pytest.fixture
async def loader_batches(redis_server):
    """The batches of a loader, summed over every instance of a service (their /metrics)."""
    registry = Registry(redis_server.url)
    async with aiohttp.ClientSession() as http:

        async def batches(service: str, loader: str) -> float:
            total = 0.0
            for instance in await registry.instances(service):
                url = f"http://{instance.host}:{instance.metrics_port}/metrics"
                async with http.get(url) as response:
                    for line in (await response.text()).splitlines():
                        if line.startswith(f'ordermesh_graphql_batches_total{{loader="{loader}"}}'):
                            total += float(line.split()[-1])
            return total

        yield batches
    await registry.close()


def subgraph_calls(gateway) -> dict[str, int]:
    """How many calls Envoy's subgraph listener passed to each subgraph, so far."""
    return {
        service: gateway.envoy.counter(f"cluster.{service}-graph.upstream_rq_total")
        for service in ("user", "inventory", "order")
    }


async def test_public_fields_need_no_token_and_me_says_why_it_needs_one(graphql, shop):
    product = await shop.product(price_minor=1250, name="Red mug")
    status, answer = await graphql(
        "query($id: ID!) { product(productId: $id) { name price { amountMinor currencyCode } } }",
        id=product.product_id,
    )
    assert status == 200
    assert answer["data"]["product"] == {
        "name": "Red mug",
        "price": {"amountMinor": "1250", "currencyCode": "EUR"},
    }

    _, anonymous = await graphql("{ me { email } }")
    (error,) = anonymous["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["extensions"]["grpcStatus"] == 16
    assert "no access token" in error["message"]

    ada = await shop.register()
    _, me = await graphql("{ me { userId email } }", token=ada.access_token)
    assert me == {"data": {"me": {"userId": ada.user_id, "email": ada.email}}}


async def test_a_bad_token_is_refused_by_envoy_as_a_graphql_error(graphql, gateway):
    before = subgraph_calls(gateway)
    # Shaped as a token (what is not is refused before, by the credential rule), but no token.
    status, answer = await graphql("{ me { email } }", token="eyJub3Qi.eyJ2YWxpZCI.c2ln")
    assert status == 401
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED", "grpcStatus": 16}
    assert error["message"].startswith("the access token was refused")
    assert subgraph_calls(gateway) == before  # refused at the edge


async def test_a_logged_out_sessions_token_is_refused_on_graphql_as_on_rest(graphql, gateway, shop):
    ada = await shop.register()
    assert "errors" not in (await graphql("{ me { email } }", token=ada.access_token))[1]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/auth/logout", json={"refreshToken": ada.refresh_token}
        ) as response,
    ):
        assert response.status == 200

    async def refused() -> bool:
        status, answer = await graphql("{ me { email } }", token=ada.access_token)
        return status == 401 and answer["errors"][0]["message"] == (
            "this session was ended: log in again"
        )

    await eventually(refused, timeout_s=10, what="the ended session refused at /graphql")
    _, answer = await graphql("{ me { email } }", token=ada.access_token)
    assert answer["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "grpcStatus": 16}


async def test_orders_of_me_cost_one_call_per_subgraph_for_20_orders(
    graphql, gateway, loader_batches, shop, system
):
    ada = await shop.register()
    products = [await shop.product(price_minor=100 * n, name=f"G{n}", stock=100) for n in (1, 2, 3)]
    for n in range(20):
        first, second = products[n % 3], products[(n + 1) % 3]
        await shop.place(ada, [(first.product_id, 1), (second.product_id, 2)])
    calls = subgraph_calls(gateway)
    batches = await loader_batches("inventory", "products")

    status, answer = await graphql(ORDERS, token=ada.access_token)

    assert status == 200
    assert "errors" not in answer, answer
    orders = answer["data"]["me"]["orders"]
    assert len(orders) == 20
    by_name = {p.name: p for p in products}
    for order in orders:
        assert [i["quantity"] for i in order["items"]] == [1, 2]
        for item in order["items"]:
            product = by_name[item["product"]["name"]]
            assert item["product"]["price"] == {
                "amountMinor": str(product.price.amount_minor),
                "currencyCode": "EUR",
            }
    # me from the user subgraph, the orders from the order subgraph, their 40 items' products
    # from the inventory subgraph: one call each, and the products in one batch.
    after = subgraph_calls(gateway)
    assert {s: after[s] - calls[s] for s in after} == {"user": 1, "order": 1, "inventory": 1}
    assert await loader_batches("inventory", "products") == batches + 1


async def test_orders_are_placed_and_cancelled_and_counted_as_writes(graphql, gateway, shop):
    ada = await shop.register()
    product = await shop.product(price_minor=300)
    checked = gateway.envoy.counter("cluster.order-graph.ratelimit.ok")

    new = {
        "idempotencyKey": str(uuid.uuid4()),
        "items": [{"productId": product.product_id, "quantity": 2}],
        "deliveryAddress": ADDRESS,
    }
    status, placed = await graphql(PLACE, token=ada.access_token, input=new)
    assert status == 200
    assert "errors" not in placed, placed
    order = placed["data"]["placeOrder"]
    assert order["state"] == "PENDING"
    assert order["total"] == {"amountMinor": "600"}
    assert order["deliveryAddress"] == {"locality": "Berlin"}
    # The same order through order.v2's gRPC API.
    seen = await shop.order(ada, order["orderId"])
    assert seen.order_id == order["orderId"]
    # Asked of the global write limits (per user and per address), as a REST write is.
    assert gateway.envoy.counter("cluster.order-graph.ratelimit.ok") >= checked + 1

    # The order's user, from the user subgraph.
    _, owned = await graphql(
        "query($id: ID!) { order(orderId: $id) { user { email } } }",
        token=ada.access_token,
        id=order["orderId"],
    )
    assert owned == {"data": {"order": {"user": {"email": ada.email}}}}

    _, cancelled = await graphql(CANCEL, token=ada.access_token, id=order["orderId"])
    assert cancelled["data"]["cancelOrder"] == {"orderId": order["orderId"], "state": "CANCELLED"}

    reads = gateway.envoy.counter("cluster.order-graph.ratelimit.ok")
    await graphql("{ me { email } }", token=ada.access_token)
    assert gateway.envoy.counter("cluster.order-graph.ratelimit.ok") == reads  # a query is no write

    # Refused with the field named, as order.v2 refuses it; nothing placed.
    bad = {**new, "idempotencyKey": str(uuid.uuid4()), "deliveryAddress": {**ADDRESS,
           "regionCode": "de"}}  # fmt: skip
    _, refused = await graphql(PLACE, token=ada.access_token, input=bad)
    (error,) = refused["errors"]
    assert error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert error["extensions"]["grpcStatus"] == 3
    assert "region_code" in error["message"]


async def test_too_deep_or_too_costly_queries_are_refused_before_any_subgraph(graphql, gateway):
    before = subgraph_calls(gateway)
    deep = (
        "{ me { orders { user { orders { user { orders { user { orders { orderId } } } } } } } } }"
    )
    status, answer = await graphql(deep)
    (error,) = answer["errors"]
    assert status == 400
    assert error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert "depth limit" in error["message"]

    costly = "{ " + " ".join(f"p{n}: products(first: 1000) {{ products {{ name }} }}" for n in
                             range(5)) + " }"  # fmt: skip
    _, answer = await graphql(costly)
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "RESOURCE_EXHAUSTED"
    assert error["extensions"]["grpcStatus"] == 8
    assert "cost" in error["message"]

    _, answer = await graphql("{ products { products { nam } } }")
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert "Did you mean" not in error["message"]  # no schema hints to strangers
    assert subgraph_calls(gateway) == before
