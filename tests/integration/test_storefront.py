"""The storefront's HTTP app, served by aiohttp's test server over the session's real Redis: the
catalogue and the sign-in forms are open, a customer's pages and actions need a session, no
POST counts without its CSRF token from the storefront's own origin, an order's page
refreshing itself does not keep its session alive, and every answer carries the security
headers.

Its gateway is a closed port: these tests stop at the storefront's own doors (the journey
through the gateway is tests/browser/test_storefront.py's)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from ordermesh.web import assets
from ordermesh.web.security import CSP
from ordermesh.web.sessions import Session, Sessions, Tokens
from ordermesh.web.site import STATIC_ROUTE

from harness.redis import PrivateRedis
from services.storefront import web as shop_web
from services.storefront.api import Api
from services.storefront.shop import Storefront

ORIGIN_HEADERS = {"Origin": "http://shop.test", "Sec-Fetch-Site": "same-origin"}
HOST = {"Host": "shop.test"}
CUSTOMER_PAGES = ["/shop/orders", "/shop/orders/o-1", "/shop/notifications"]
CUSTOMER_ACTIONS = ["/shop/orders", "/shop/orders/o-1/cancel", "/shop/logout"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Parts:
    def __init__(self, shop: Storefront, redis: aioredis.Redis, namespace: str):
        self.shop, self.redis, self.namespace = shop, redis, namespace

    async def session(self) -> Session:
        """A signed-in customer's session, as sign-in makes one (its tokens go nowhere here)."""
        return await self.shop.sessions.create(
            user_id="u-1", email="ada@example.com", name="Ada", roles=(),
            tokens=Tokens(access_token="not.a.token", access_expires_at=time.time() + 600,
                          refresh_token="r", refresh_expires_at=time.time() + 3600),
        )  # fmt: skip


@pytest.fixture
async def parts(redis_server: PrivateRedis) -> AsyncIterator[Parts]:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    namespace = f"storefront-test-{uuid.uuid4().hex[:8]}"
    http = aiohttp.ClientSession()
    api = Api(f"http://127.0.0.1:{closed_port()}", ca=None, http=http, timeout_s=1.0,
              internal_token="an-internal-secret-for-this-test")  # fmt: skip
    try:
        yield Parts(Storefront(api, Sessions(redis, ttl_s=60, namespace=namespace)), redis,
                    namespace)  # fmt: skip
    finally:
        await http.close()
        await redis.aclose()


@pytest.fixture
async def client(parts: Parts) -> AsyncIterator[TestClient]:
    root = web.Application()
    app = shop_web.application(parts.shop, assets=assets.load(shop_web.STATIC, shop_web.PREFIX))
    root.add_subapp(shop_web.PREFIX, app)
    async with TestClient(TestServer(root)) as test_client:
        yield test_client


def cookie(session: Session) -> dict[str, str]:
    return {"Cookie": f"{shop_web.COOKIE}={session.id}"}


def assert_guarded(response: aiohttp.ClientResponse) -> None:
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_catalogue_is_open_and_says_so_when_the_system_does_not_answer(client):
    response = await client.get("/shop/")

    assert response.status == 503
    page = await response.text()
    assert "reading the catalogue: the system did not answer" in page
    assert 'data-testid="nav-sign-in"' in page
    assert_guarded(response)


@pytest.mark.parametrize("path", CUSTOMER_PAGES)
@pytest.mark.parametrize("session_id", [None, "x" * 43])
async def test_a_customers_page_without_a_session_goes_to_the_sign_in_page(
    client, path, session_id
):
    headers = {"Cookie": f"{shop_web.COOKIE}={session_id}"} if session_id else {}

    response = await client.get(path, headers=headers, allow_redirects=False)

    assert response.status == 303
    ended = "?ended=1" if session_id else ""
    assert response.headers["Location"] == f"/shop/login{ended}"
    assert_guarded(response)


@pytest.mark.parametrize("path", CUSTOMER_ACTIONS)
async def test_an_action_without_a_session_is_not_done_and_leads_to_sign_in(client, path):
    response = await client.post(
        path, data={"quantity-p1": "1"}, headers=ORIGIN_HEADERS, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/shop/login"

    refreshed = await client.get("/shop/orders/o-1/progress", headers={"HX-Request": "true"})
    assert refreshed.status == 401
    assert refreshed.headers["HX-Redirect"] == "/shop/login"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # says nothing of where it comes from
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {**ORIGIN_HEADERS, "Origin": "http://elsewhere.test"},
    ],
)
async def test_an_order_without_its_sessions_token_from_the_shops_origin_is_refused(
    client, parts, headers
):
    session = await parts.session()
    form = {"quantity-p1": "1", "order_key": "k-1", "recipient": "Ada", "line": "1 Main St",
            "locality": "Lyon", "region_code": "FR"}  # fmt: skip

    without_token = await client.post(
        "/shop/orders", data=form, headers={**cookie(session), **HOST, **ORIGIN_HEADERS}
    )
    other_origin = await client.post(
        "/shop/orders",
        data={**form, "csrf_token": session.csrf_token},
        headers={**cookie(session), **HOST, **headers},
    )

    # Refused at the door: the gateway (a closed port here) was never asked (that is a 503).
    assert without_token.status == 403
    assert other_origin.status == 403
    assert_guarded(other_origin)


async def test_an_order_with_its_token_is_sent_on_and_a_failure_shown_on_the_catalogue(
    client, parts
):
    session = await parts.session()
    form = {"quantity-p1": "1", "order_key": "k-1", "recipient": "Ada", "line": "1 Main St",
            "locality": "Lyon", "region_code": "FR", "csrf_token": session.csrf_token}  # fmt: skip

    response = await client.post(
        "/shop/orders", data=form, headers={**cookie(session), **HOST, **ORIGIN_HEADERS}
    )

    # Past the door, to the gateway, which does not answer here: the catalogue says so.
    assert response.status == 503
    assert "the system did not answer" in await response.text()


async def test_a_sign_in_form_that_is_not_the_shops_own_is_refused(client):
    form_page = await client.get("/shop/login", headers=HOST)
    assert form_page.status == 200
    token = form_page.cookies[shop_web.LOGIN_COOKIE].value

    forged = await client.post(
        "/shop/login",
        data={"csrf_token": "x" * 43, "email": "a@example.com", "password": "p"},
        headers={**HOST, **ORIGIN_HEADERS, "Cookie": f"{shop_web.LOGIN_COOKIE}={token}"},
    )

    assert forged.status == 403
    assert "did not come from this shop" in await forged.text()
    assert shop_web.COOKIE not in forged.cookies


async def test_only_the_catalogue_and_the_sign_in_forms_are_served_without_a_session(parts):
    app = shop_web.application(parts.shop, assets={})
    named = app.router.named_resources()

    public = {
        route.handler for name in shop_web.PUBLIC_ROUTES | {STATIC_ROUTE} for route in named[name]
    }

    assert public == {
        shop_web._root, shop_web.catalogue, shop_web.login_form, shop_web.sign_in,
        shop_web.register_form, shop_web.register, shop_web.static,
    }  # fmt: skip
    assert {route.handler for route in named[shop_web.PROGRESS_ROUTE]} == {shop_web.order_progress}


async def test_an_orders_page_refreshing_itself_does_not_keep_the_session_alive(client, parts):
    session = await parts.session()
    [key] = [key async for key in parts.redis.scan_iter(match=f"{parts.namespace}:session:*")]
    await parts.redis.pexpire(key, 5_000)  # as if left alone for 55 of its 60 s

    refresh = await client.get(
        "/shop/orders/o-1/progress", headers={**cookie(session), "HX-Request": "true"}
    )
    after_refresh_ms = await parts.redis.pttl(key)
    page = await client.get("/shop/notifications", headers=cookie(session))
    after_page_ms = await parts.redis.pttl(key)

    assert refresh.status == 200  # the fragment that says the order could not be read
    assert "the system did not answer" in await refresh.text()
    assert 0 < after_refresh_ms <= 5_000
    assert page.status == 503
    assert after_page_ms > 50_000
