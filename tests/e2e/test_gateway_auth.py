"""Auth at the gateway: Envoy refuses bad tokens before any service sees them, never believes
identity headers a client sends, honours logouts, and needs the auth service only on the routes
whose contract asks for its check, which fail closed without it."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
import uuid

import aiohttp
import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from order.v1 import order_service_pb2 as order_pb
from order.v1 import order_service_pb2_grpc as order_grpc
from ordermesh.gateway.envoy import SESSION_HEADER, USER_HEADER

from harness.shop import eventually

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]


def signing_key(system) -> tuple[str, Ed25519PrivateKey]:
    """The user service's current signing key, read from its store (this test owns the system)."""
    path = system.directory / "user" / "store.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        kid, doc = db.execute(
            'SELECT id, doc FROM "doc_signing_keys" '
            "ORDER BY json_extract(doc, '$.sign_until') DESC LIMIT 1"
        ).fetchone()
    key = load_pem_private_key(json.loads(doc)["private_pem"].encode(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return kid, key


def claims(user_id: str, **overrides) -> dict:
    now = int(time.time())
    return {
        "sub": user_id,
        "iss": "ordermesh",
        "aud": "ordermesh",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
        "roles": ["customer"],
        **overrides,
    }


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def requests_reaching(gateway, cluster: str) -> int:
    return await asyncio.to_thread(gateway.envoy.counter, f"cluster.{cluster}.upstream_rq_total")


async def get(http, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with http.get(url, headers=headers or {}) as response:
        return response.status, await response.json(content_type=None)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_bad_tokens_are_refused_before_reaching_a_service(system, gateway, shop, http):
    ada = await shop.register()
    kid, key = signing_key(system)
    stranger = Ed25519PrivateKey.generate()
    bad = {
        "garbage": "not-a-token",
        "tampered": tampered(ada.access_token),
        "alg none": jwt.encode(claims(ada.user_id), None, algorithm="none"),
        "unknown key": jwt.encode(
            claims(ada.user_id), stranger, algorithm="EdDSA", headers={"kid": "unknown"}
        ),
        "unknown key, known kid": jwt.encode(
            claims(ada.user_id), stranger, algorithm="EdDSA", headers={"kid": kid}
        ),
        "expired": jwt.encode(
            claims(ada.user_id, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
            key,
            algorithm="EdDSA",
            headers={"kid": kid},
        ),
        "wrong audience": jwt.encode(
            claims(ada.user_id, aud="someone-else"), key, algorithm="EdDSA", headers={"kid": kid}
        ),
        "wrong issuer": jwt.encode(
            claims(ada.user_id, iss="evil"), key, algorithm="EdDSA", headers={"kid": kid}
        ),
    }
    # The control: a token signed with the real key passes, so the refusals are the tokens'.
    good = jwt.encode(claims(ada.user_id), key, algorithm="EdDSA", headers={"kid": kid})
    status, _ = await get(http, f"{gateway.url}/v1/orders", {"authorization": f"Bearer {good}"})
    assert status == 200

    before = await requests_reaching(gateway, "order")
    for name, token in bad.items():
        status, body = await get(
            http, f"{gateway.url}/v1/orders", {"authorization": f"Bearer {token}"}
        )
        assert (status, body["code"]) == (401, UNAUTHENTICATED), f"{name}: {status} {body}"
    status, body = await get(http, f"{gateway.url}/v1/orders")
    assert (status, body["code"]) == (401, UNAUTHENTICATED)
    assert await requests_reaching(gateway, "order") == before


async def test_admin_routes_need_the_admin_role(gateway, shop, http):
    ada = await shop.register()
    before = await requests_reaching(gateway, "inventory")
    async with http.post(
        f"{gateway.url}/v1/products",
        json={"sku": "X-1", "name": "x", "price": {"amountMinor": "1", "currencyCode": "EUR"}},
        headers={"authorization": f"Bearer {ada.access_token}"},
    ) as response:
        body = await response.json()
    assert response.status == 403
    assert body["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "administrators only" in body["message"]
    assert await requests_reaching(gateway, "inventory") == before  # refused in Envoy


async def test_identity_headers_sent_by_clients_are_never_believed(system, gateway, shop, http):
    ada, bob = await shop.register(), await shop.register()
    product = await shop.product(stock=5)
    bobs = await shop.place(bob, [(product.product_id, 1)])
    claiming_bob = {USER_HEADER: bob.user_id, SESSION_HEADER: uuid.uuid4().hex}

    # Through the gateway, with Ada's token and headers claiming Bob: Ada's orders.
    status, body = await get(
        http,
        f"{gateway.url}/v1/orders",
        {"authorization": f"Bearer {ada.access_token}", **claiming_bob},
    )
    assert status == 200
    assert body["orders"] == []
    # Without a token, the headers make no caller.
    status, body = await get(http, f"{gateway.url}/v1/orders", claiming_bob)
    assert (status, body["code"]) == (401, UNAUTHENTICATED)
    # A public route with the headers: they are removed, the call works.
    status, _ = await get(http, f"{gateway.url}/v1/products?pageSize=1", claiming_bob)
    assert status == 200
    # Straight to the order service, the headers alone: refused, a caller is a verified token.
    async with grpc.aio.insecure_channel(system.address("order")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await order_grpc.OrderServiceStub(channel).GetOrder(
                order_pb.GetOrderRequest(order_id=bobs.order_id),
                metadata=list(claiming_bob.items()),
                timeout=5,
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_logged_out_sessions_access_token_is_refused(gateway, shop, http):
    ada = await shop.register()
    auth = {"authorization": f"Bearer {ada.access_token}"}
    assert (await get(http, f"{gateway.url}/v1/users/me", auth))[0] == 200
    async with http.post(
        f"{gateway.url}/v1/auth/logout", json={"refreshToken": ada.refresh_token}
    ) as response:
        assert response.status == 200

    async def refused() -> bool:
        status, body = await get(http, f"{gateway.url}/v1/users/me", auth)
        return status == 401 and "session was ended" in body["message"]

    await eventually(refused, timeout_s=10, what="revoked session refused")


async def test_without_the_auth_service_only_the_routes_it_checks_fail_closed(
    system, gateway, shop, http
):
    ada = await shop.register()
    admin = await shop.admin()
    auth = system.processes["auth"]  # started by this test session; restarted below
    new_product = {
        "sku": f"A-{uuid.uuid4().hex[:8]}",
        "name": "a",
        "price": {"amountMinor": "1", "currencyCode": "EUR"},
    }
    before = await requests_reaching(gateway, "inventory")
    auth.kill()
    try:

        async def closed() -> bool:
            async with http.post(
                f"{gateway.url}/v1/products",
                json=new_product,
                headers={"authorization": f"Bearer {admin.access_token}"},
            ) as response:
                body = await response.json(content_type=None)
                return response.status == 503 and "auth service" in body["message"]

        await eventually(closed, timeout_s=10, what="503 on an admin route once auth is gone")
        assert await requests_reaching(gateway, "inventory") == before
        # Everything Envoy decides alone goes on.
        assert (await get(http, f"{gateway.url}/v1/products"))[0] == 200
        me = await get(
            http, f"{gateway.url}/v1/users/me", {"authorization": f"Bearer {ada.access_token}"}
        )
        assert me[0] == 200
    finally:
        await asyncio.to_thread(auth.start)
        await asyncio.to_thread(gateway.wait_for_healthy, 1, clusters=["auth"])
    async with http.post(
        f"{gateway.url}/v1/products",
        json=new_product,
        headers={"authorization": f"Bearer {admin.access_token}"},
    ) as response:
        assert response.status == 200
