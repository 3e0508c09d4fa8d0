"""The GraphQL subgraphs of the user, inventory and order services, on the instances' HTTP
servers (the one of /metrics), through the services' use cases: entities batched, the caller
from the token, errors with their gRPC status in `extensions`."""

from __future__ import annotations

import aiohttp
import pytest
from ordermesh.identity import INTERNAL_HEADER
from ordermesh.registry import Registry


@pytest.fixture
async def graph(system, redis_server):
    registry = Registry(redis_server.url)
    urls = {}
    for service in ("user", "inventory", "order"):
        (instance, *_) = await registry.instances(service)
        urls[service] = f"http://{instance.host}:{instance.metrics_port}"
    await registry.close()
    async with aiohttp.ClientSession() as http:

        async def ask(service: str, query: str, token: str = "", **variables) -> dict:
            # As the gateway calls them: with the internal hops' secret.
            headers = {INTERNAL_HEADER: system.internal_token}
            if token:
                headers["authorization"] = f"Bearer {token}"
            async with http.post(
                urls[service] + "/graphql",
                json={"query": query, "variables": variables},
                headers=headers,
            ) as response:
                assert response.status == 200, await response.text()
                return await response.json()

        async def batches(service: str, loader: str) -> float:
            async with http.get(urls[service] + "/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                if line.startswith(f'ordermesh_graphql_batches_total{{loader="{loader}"}}'):
                    return float(line.split()[-1])
            return 0.0

        ask.batches = batches
        yield ask


async def test_products_are_resolved_as_entities_in_one_batch(graph, shop):
    products = [await shop.product(price_minor=100 * n, name=f"P{n}") for n in (1, 2, 3)]
    before = await graph.batches("inventory", "products")

    found = await graph(
        "inventory",
        "query($r: [_Any!]!) { _entities(representations: $r) "
        "{ ... on Product { productId name price { amountMinor currencyCode } } } }",
        r=[{"__typename": "Product", "productId": p.product_id} for p in products]
        + [{"__typename": "Product", "productId": "nope"}],
    )

    assert [e and e["name"] for e in found["data"]["_entities"]] == ["P1", "P2", "P3", None], found
    assert found["data"]["_entities"][1]["price"] == {"amountMinor": "200", "currencyCode": "EUR"}
    (error,) = found["errors"]
    assert error["extensions"] == {"code": "NOT_FOUND", "grpcStatus": 5}
    assert error["message"] == "product 'nope' does not exist"
    assert await graph.batches("inventory", "products") == before + 1


async def test_me_needs_a_token_and_says_so_with_the_grpc_status(graph, shop):
    anonymous = await graph("user", "{ me { email } }")
    assert anonymous["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "grpcStatus": 16}
    bad = await graph("user", "{ me { email } }", token="not-a-jwt")
    assert bad["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    ada = await shop.register()
    me = await graph("user", "{ me { userId email } }", token=ada.access_token)
    assert me["data"]["me"] == {"userId": ada.user_id, "email": ada.email}


async def test_orders_are_placed_listed_and_checked_as_order_v2_checks_them(graph, shop):
    ada = await shop.register()
    product = await shop.product(price_minor=250)
    place = (
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) "
        "{ orderId state items { quantity lineTotal { amountMinor } product { productId } } } }"
    )
    address = {"recipient": "Ada", "addressLines": ["Main St 1"], "locality": "Berlin",
               "regionCode": "DE"}  # fmt: skip
    item = {"productId": product.product_id, "quantity": 2}

    new = {"idempotencyKey": "k1", "items": [item], "deliveryAddress": address}
    placed = await graph("order", place, token=ada.access_token, i=new)
    order = placed["data"]["placeOrder"]
    assert order["state"] == "PENDING"
    assert order["items"] == [
        {"quantity": 2, "lineTotal": {"amountMinor": "500"},
         "product": {"productId": product.product_id}}
    ]  # fmt: skip
    refused = await graph("order", place, token=ada.access_token,
                          i={"idempotencyKey": "k2", "items": [item],
                             "deliveryAddress": {**address, "regionCode": "de"}})  # fmt: skip
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT"
    assert "region_code" in refused["errors"][0]["message"]

    mine = await graph(
        "order",
        "query($r: [_Any!]!) { _entities(representations: $r) "
        "{ ... on User { orders { orderId deliveryAddress { locality } } } } }",
        token=ada.access_token,
        r=[{"__typename": "User", "userId": ada.user_id}],
    )
    assert mine["data"]["_entities"][0]["orders"] == [
        {"orderId": order["orderId"], "deliveryAddress": {"locality": "Berlin"}}
    ]
    other = await shop.register()
    theirs = await graph(
        "order",
        "query($r: [_Any!]!) { _entities(representations: $r) "
        "{ ... on User { orders { orderId } } } }",
        token=other.access_token,
        r=[{"__typename": "User", "userId": ada.user_id}],
    )
    assert theirs["errors"][0]["extensions"]["code"] == "NOT_FOUND"
