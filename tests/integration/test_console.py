"""The operator console's HTTP app, served by aiohttp's test server (and by the runtime's metrics
server, as every instance serves it) over the session's real Redis: nothing works without a
session, no POST counts without its CSRF token from the console's own origin, and every answer
carries the security headers.

Its gateway is a closed port: these tests stop at the console's own doors (the real journey
through the gateway is tests/e2e's and the browser tests')."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from ordermesh import logfiles
from ordermesh.identity import INTERNAL_HEADER
from ordermesh.metrics import Metrics, MetricsServer
from ordermesh.registry import Instance, Registry
from ordermesh.tokens import KeySet, TokenVerifier
from ordermesh.web import assets
from ordermesh.web.security import CSP
from ordermesh.web.sessions import Session, Sessions, Tokens
from ordermesh.web.site import STATIC_ROUTE

from harness.redis import PrivateRedis
from services.console import web as console_web
from services.console.clients import Accounts, Gateway, Operators
from services.console.config import ConsoleSettings
from services.console.pages import PREFIX, STATIC
from services.console.service import Console

ORIGIN_HEADERS = {"Origin": "http://console.test", "Sec-Fetch-Site": "same-origin"}
HOST = {"Host": "console.test"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Parts:
    def __init__(
        self,
        console: Console,
        registry: Registry,
        sessions: Sessions,
        *,
        redis: aioredis.Redis,
        namespace: str,
    ):
        self.console, self.registry, self.sessions = console, registry, sessions
        self.redis, self.namespace = redis, namespace

    async def session(self) -> Session:
        """A signed-in admin's session, as sign-in makes one (its tokens go nowhere here)."""
        return await self.sessions.create(
            user_id="admin-1", email="admin@ordermesh.test", name="Ada Admin", roles=("admin",),
            tokens=Tokens(
                access_token="not.a.token", access_expires_at=time.time() + 600,
                refresh_token="r", refresh_expires_at=time.time() + 3600,
            ),
        )  # fmt: skip


@pytest.fixture
async def parts(redis_server: PrivateRedis) -> AsyncIterator[Parts]:
    settings = ConsoleSettings(
        redis_url=redis_server.url,
        gateway_url=f"http://127.0.0.1:{closed_port()}",
        console_call_timeout_s=1.0,
        internal_token="an-internal-secret-for-this-test",
        # As ordermesh.deploy.environment derives them from the catalogue.
        operator_api_services="user,inventory,order,notification,auth",
        saga_api_services="order",
    )
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    # A namespace of the test's own: the shared Redis holds other tests' registrations.
    namespace = f"console-test-{uuid.uuid4().hex[:8]}"
    registry = Registry(redis_server.url, namespace=namespace)
    sessions = Sessions(redis, ttl_s=60, namespace=namespace)
    http = aiohttp.ClientSession()
    gateway = Gateway(
        settings.gateway_url, ca=None, http=http, internal_token=settings.internal_token
    )
    console = Console(
        settings,
        sessions=sessions,
        accounts=Accounts(gateway, timeout_s=1.0),
        operators=Operators(gateway, timeout_s=1.0),
        verifier=TokenVerifier(KeySet(gateway.jwks), issuer="ordermesh", audience="ordermesh"),
        registry=registry,
    )
    try:
        yield Parts(console, registry, sessions, redis=redis, namespace=namespace)
    finally:
        await gateway.close()
        await http.close()
        await registry.close()
        await redis.aclose()


@pytest.fixture
async def client(parts: Parts) -> AsyncIterator[TestClient]:
    # Mounted as ordermesh.grpc.serve mounts it, under /console of a bigger application.
    root = web.Application()
    root.add_subapp(
        "/console", console_web.application(parts.console, assets=assets.load(STATIC, PREFIX))
    )
    async with TestClient(TestServer(root)) as test_client:
        yield test_client


def cookie(session: Session) -> dict[str, str]:
    return {"Cookie": f"{console_web.COOKIE}={session.id}"}


PAGES = [
    "/console/",
    "/console/story?id=corr-1",
    "/console/messages?service=order",
    "/console/messages/order/dead-letters/ev-1?queue=order.saga.dlq",
    "/console/messages/order/parked/ev-1",
    "/console/sagas",
    "/console/sagas/order/order-1",
]
ACTIONS = [
    "/console/logout",
    "/console/messages/order/dead-letters/replay",
    "/console/messages/order/dead-letters/discard",
    "/console/messages/order/parked/unpark",
    "/console/sagas/order/order-1/retry",
    "/console/sagas/order/order-1/resolve",
]


def assert_guarded(response: aiohttp.ClientResponse) -> None:
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("session_id", [None, "x" * 43, "not-even-an-id"])
async def test_a_page_without_a_session_goes_to_the_sign_in_page(client, path, session_id):
    headers = {"Cookie": f"{console_web.COOKIE}={session_id}"} if session_id else {}

    response = await client.get(path, headers=headers, allow_redirects=False)

    assert response.status == 303
    # A browser that still held a session's cookie is told that its session ended.
    ended = "?ended=1" if session_id else ""
    assert response.headers["Location"] == f"/console/login{ended}"
    assert response.headers["Cache-Control"] == "no-store"
    assert_guarded(response)


async def test_the_live_fragment_without_a_session_is_refused_and_htmx_sent_to_sign_in(client):
    response = await client.get(
        "/console/fragments/live", headers={"HX-Request": "true"}, allow_redirects=False
    )

    assert response.status == 401
    assert response.headers["HX-Redirect"] == "/console/login"
    assert_guarded(response)


@pytest.mark.parametrize("path", ACTIONS)
async def test_an_action_without_a_session_is_refused(client, path):
    response = await client.post(
        path, data={"reason": "r", "chosen": "q|e"}, headers=ORIGIN_HEADERS, allow_redirects=False
    )

    # Not done: the browser is sent to sign in (htmx's request would be answered 401).
    assert response.status == 303
    assert response.headers["Location"] == "/console/login"
    assert_guarded(response)


async def test_the_sign_in_page_renders_with_its_own_csrf_cookie(client):
    response = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})

    assert response.status == 200
    page = await response.text()
    assert 'data-testid="login-form"' in page
    assert 'name="password"' in page
    assert_guarded(response)
    assert response.headers["Cache-Control"] == "no-store"
    login = response.cookies[console_web.LOGIN_COOKIE]
    assert f'name="csrf_token" value="{login.value}"' in page
    assert login["httponly"]
    assert login["samesite"] == "Strict"
    assert login["path"] == "/console"
    assert login["secure"]  # the gateway said https


async def test_signing_in_without_the_forms_token_or_from_elsewhere_is_refused(client):
    form = await client.get("/console/login")
    token = form.cookies[console_web.LOGIN_COOKIE].value
    login = {"email": "admin@ordermesh.test", "password": "secret"}
    login_cookie = {"Cookie": f"{console_web.LOGIN_COOKIE}={token}"}

    without_token = await client.post(
        "/console/login", data=login, headers={**ORIGIN_HEADERS, **HOST, **login_cookie}
    )
    from_elsewhere = await client.post(
        "/console/login",
        data={**login, "csrf_token": token},
        headers={"Origin": "https://evil.example", **HOST, **login_cookie},
    )

    assert without_token.status == 403
    assert from_elsewhere.status == 403
    assert_guarded(from_elsewhere)


async def test_signing_in_with_the_gateway_down_says_so_on_the_sign_in_page(client):
    form = await client.get("/console/login")
    token = form.cookies[console_web.LOGIN_COOKIE].value

    response = await client.post(
        "/console/login",
        data={"email": "admin@ordermesh.test", "password": "secret", "csrf_token": token},
        headers={**ORIGIN_HEADERS, **HOST, "Cookie": f"{console_web.LOGIN_COOKIE}={token}"},
        allow_redirects=False,
    )

    assert response.status == 503
    assert "Cannot sign in now" in await response.text()
    assert console_web.COOKIE not in response.cookies


@pytest.mark.parametrize("path", ACTIONS)
async def test_a_post_without_the_csrf_token_is_refused(client, parts, path):
    session = await parts.session()

    response = await client.post(
        path,
        data={"reason": "r", "chosen": "order.saga.dlq|ev-1"},
        headers={**ORIGIN_HEADERS, **HOST, **cookie(session)},
        allow_redirects=False,
    )

    assert response.status == 403
    assert_guarded(response)
    assert await parts.sessions.get(session.id) is not None  # not even signed out


@pytest.mark.parametrize(
    "where",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {},
    ],
)
async def test_a_post_with_the_token_from_another_origin_is_refused(client, parts, where):
    session = await parts.session()

    response = await client.post(
        "/console/sagas/order/order-1/resolve",
        data={"reason": "r", "csrf_token": session.csrf_token},
        headers={**where, **HOST, **cookie(session)},
        allow_redirects=False,
    )

    assert response.status == 403


async def test_a_post_from_the_console_with_its_token_reaches_the_gateway(client, parts):
    session = await parts.session()

    response = await client.post(
        "/console/sagas/order/order-1/resolve",
        data={"reason": "fixed by hand"},
        headers={
            **ORIGIN_HEADERS,
            **HOST,
            **cookie(session),
            "X-CSRF-Token": session.csrf_token,  # as htmx sends it
        },
        allow_redirects=False,
    )
    page = await client.get(response.headers["Location"], headers=cookie(session))

    assert response.status == 303
    assert response.headers["Location"] == "/console/sagas/order/order-1"
    # The gateway is down here: the outcome says so, on the page the action came from.
    assert 'data-testid="flash"' in (await page.text())
    assert "Not done" in await page.text()


async def test_an_action_without_a_reason_is_not_done(client, parts):
    session = await parts.session()

    response = await client.post(
        "/console/messages/order/parked/unpark",
        data={"event_id": "ev-1", "reason": "  ", "csrf_token": session.csrf_token},
        headers={**ORIGIN_HEADERS, **HOST, **cookie(session)},
        allow_redirects=False,
    )
    page = await (await client.get(response.headers["Location"], headers=cookie(session))).text()

    assert "a reason is required" in page


async def test_the_live_page_shows_the_registered_instances(client, parts):
    session = await parts.session()
    await parts.registry.put(
        Instance(service="order", instance_id="order-7", address="127.0.0.1:5007",
                 version="1.2.3", metadata={"breaker.inventory": "open"}),
        ttl_s=30,
    )  # fmt: skip

    page = await client.get("/console/", headers=cookie(session))
    fragment = await client.get(
        "/console/fragments/live", headers={**cookie(session), "HX-Request": "true"}
    )

    assert page.status == 200
    text = await page.text()
    assert 'data-testid="instance-row" data-service="order" data-instance-id="order-7"' in text
    assert "no figures: PROMETHEUS_URL is not set" in text
    assert f"hx-headers='{json.dumps({'X-CSRF-Token': session.csrf_token})}'" in text
    assert_guarded(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert fragment.status == 200
    assert "<html" not in await fragment.text()
    assert 'data-instance-id="order-7"' in await fragment.text()


async def test_signing_out_ends_the_session(client, parts):
    session = await parts.session()

    response = await client.post(
        "/console/logout",
        data={"csrf_token": session.csrf_token},
        headers={**ORIGIN_HEADERS, **HOST, **cookie(session)},
        allow_redirects=False,
    )
    after = await client.get("/console/", headers=cookie(session), allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/console/login"
    assert await parts.sessions.get(session.id) is None
    assert after.status == 303


async def test_static_files_are_served_by_their_hash_for_good(client):
    htmx = assets.load(STATIC, PREFIX)["htmx.min.js"]

    response = await client.get(htmx.url)
    stale = await client.get(f"/console/static/{'0' * 16}/htmx.min.js")

    assert response.status == 200
    assert await response.read() == htmx.body
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert_guarded(response)
    assert stale.status == 404
    assert_guarded(stale)


async def test_an_unknown_path_is_not_found_and_still_guarded(client, parts):
    session = await parts.session()

    response = await client.get("/console/nothing-here", headers=cookie(session))

    assert response.status == 404
    assert_guarded(response)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/console/nothing-here", {}, 303),
        ("GET", "/console/logout", {}, 303),  # a route, not for GET: no route matches
        ("GET", "/console/nothing-here", {"HX-Request": "true"}, 401),
        ("POST", "/console/nothing-here", ORIGIN_HEADERS, 303),
        ("PUT", "/console/login", ORIGIN_HEADERS, 303),  # the sign-in page's path, not its route
        ("POST", "/console/nothing-here", {**ORIGIN_HEADERS, "HX-Request": "true"}, 401),
    ],
)
async def test_a_request_that_matches_no_route_needs_a_session_like_any_page(
    client, method, path, headers, status
):
    response = await client.request(method, path, headers=headers, allow_redirects=False)

    assert response.status == status
    if status == 303:
        assert response.headers["Location"] == "/console/login"
    else:
        assert response.headers["HX-Redirect"] == "/console/login"
    assert response.headers["Cache-Control"] == "no-store"
    assert_guarded(response)


async def test_only_the_root_the_sign_in_page_and_the_static_files_are_served_without_a_session(
    parts,
):
    app = console_web.application(parts.console, assets=assets.load(STATIC, PREFIX))
    named = app.router.named_resources()

    public = {
        route.handler
        for name in console_web.PUBLIC_ROUTES | {STATIC_ROUTE}
        for route in named[name]
    }
    refresh = {route.handler for route in named[console_web.LIVE_REFRESH_ROUTE]}

    assert public == {
        console_web._root, console_web.login_form, console_web.sign_in, console_web.static
    }  # fmt: skip
    assert refresh == {console_web.live_fragment}


async def test_the_live_pages_refresh_does_not_extend_the_session_but_a_page_does(client, parts):
    session = await parts.session()
    [key] = [key async for key in parts.redis.scan_iter(match=f"{parts.namespace}:session:*")]
    await parts.redis.pexpire(key, 5_000)  # as if left alone for 55 of its 60 s

    refresh = await client.get(
        "/console/fragments/live", headers={**cookie(session), "HX-Request": "true"}
    )
    after_refresh_ms = await parts.redis.pttl(key)
    page = await client.get("/console/", headers=cookie(session))
    after_page_ms = await parts.redis.pttl(key)

    assert refresh.status == 200
    assert 0 < after_refresh_ms <= 5_000
    assert page.status == 200
    assert after_page_ms > 50_000


async def test_the_metrics_server_mounts_the_console_for_the_gateway_alone(parts):
    server = MetricsServer(
        Metrics(),
        host="127.0.0.1",
        apps={
            "/console": console_web.application(parts.console, assets=assets.load(STATIC, PREFIX))
        },
        internal_token="hop-secret",
    )
    port = await server.start()
    through_the_gateway = {INTERNAL_HEADER: "hop-secret"}
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with http.get(
                f"{base}/console", headers=through_the_gateway, allow_redirects=False
            ) as root:
                assert root.status == 303
                assert root.headers["Location"] == "/console/"
            async with http.get(f"{base}/console/login", headers=through_the_gateway) as login:
                assert login.status == 200
                assert login.headers["Content-Security-Policy"] == CSP
            for headers in ({}, {INTERNAL_HEADER: "guessed"}):
                async with http.get(f"{base}/console/login", headers=headers) as around:
                    assert around.status == 401
            async with http.get(f"{base}/metrics") as metrics:
                assert metrics.status == 200
                assert "Content-Security-Policy" not in metrics.headers
    finally:
        await server.stop()


def test_one_requests_log_lines_are_found_in_every_file_with_the_gateways(tmp_path: Path):
    service = tmp_path / "services" / "order"
    service.mkdir(parents=True)
    gateway = tmp_path / "gateway"
    gateway.mkdir()
    (service / "order-1.log").write_text(
        json.dumps({"timestamp": "2026-12-05T10:00:00.002000Z", "event": "a",
                    "correlation_id": "corr-1"}) + "\n"
        + json.dumps({"timestamp": "2026-12-05T10:00:00.001000Z", "event": "other",
                      "correlation_id": "corr-2"}) + "\n"
        + "not json corr-1\n"
        + json.dumps({"timestamp": "2026-12-05T10:00:00.009000Z", "event": "half",
                      "correlation_id": "corr-1"})  # being written: no newline yet
    )  # fmt: skip
    (gateway / "envoy.log").write_text(
        "[2026-12-05 10:00:00.000][1][info] envoy's own line corr-1\n"
        + json.dumps({"time": "2026-12-05T10:00:00.001Z", "request_id": "corr-1",
                      "path": "/v1/orders", "status": "503"}) + "\n"
    )  # fmt: skip

    found = logfiles.search(tmp_path, {"corr-1"})

    assert [(r.get("service", ""), r["event"]) for r in found] == [
        ("gateway", "access"),
        ("", "a"),
    ]
    assert found[0]["correlation_id"] == "corr-1"
    assert found[0]["status"] == "503"
    assert len(logfiles.search(tmp_path, {"corr-1"}, limit=1)) == 1
    assert logfiles.search(tmp_path, set()) == []
    # `make logs` reads what it read before: no access lines.
    assert [r["event"] for r in logfiles.Reader(tmp_path).new_records()] == ["other", "a"]
