"""The operator console in Chromium, on the system `make up` runs: an admin signs in and watches
the live system lose an instance and get it back, follows an order from its placement to its
approval, replays a message a consumer failed on once the fault is cleared (applied exactly
once), turns a fault switch on and off, and resolves a saga parked for an operator; a customer
opens neither the console nor any admin RPC, and nothing of the console works without a
session."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from services import catalogue
from tests.browser.system import RunningSystem, eventually

Shot = Callable[[Page, str], None]

PASSWORD = "correct horse battery"


class Rest:
    """A client of the gateway's REST API, over its TLS (the local CA make up made)."""

    def __init__(self, up: RunningSystem):
        self.base = up.gateway_url
        self.tls = ssl.create_default_context(cafile=str(up.ca_file))

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: str = ""
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"content-type": "application/json",
                     **({"authorization": f"Bearer {token}"} if token else {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, context=self.tls, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read() or b"{}")

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        status, answer = self.call(method, path, body, **kw)
        assert status == 200, (method, path, status, answer)
        return answer

    def raw(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """One request as it is, its answer as it is (redirects not followed)."""
        url = urllib.parse.urlsplit(self.base)
        connection = http.client.HTTPSConnection(url.hostname or "", url.port, context=self.tls,
                                                 timeout=10)  # fmt: skip
        body = urllib.parse.urlencode(form) if form is not None else None
        sent = {**({"content-type": "application/x-www-form-urlencoded"} if body else {}),
                **(headers or {})}  # fmt: skip
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        answer.read()
        connection.close()
        return answer

    def customer(self) -> tuple[str, str]:
        """A new customer's (email, access token)."""
        email = f"console-{uuid.uuid4().hex[:8]}@example.com"
        self.ok("POST", "/v1/users", {"email": email, "password": PASSWORD, "displayName": "Ida"})
        tokens = self.ok("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        return email, tokens["tokens"]["accessToken"]

    def order(self, token: str, quantity: int = 1) -> str:
        products = self.ok("GET", "/v1/products?pageSize=100")["products"]
        product = next(p for p in products if int(p["availableStock"]) >= quantity)
        placed = self.ok("POST", "/v1/orders", {
            "idempotencyKey": str(uuid.uuid4()),
            "items": [{"productId": product["productId"], "quantity": quantity}],
        }, token=token)  # fmt: skip
        return str(placed["order"]["orderId"])

    def status_of(self, token: str, order_id: str) -> str:
        return str(self.ok("GET", f"/v1/orders/{order_id}", token=token)["order"]["status"])


@pytest.fixture(scope="module")
def rest(up: RunningSystem) -> Rest:
    return Rest(up)


def sign_in(page: Page, up: RunningSystem, email: str = "", password: str = "") -> None:
    page.goto(f"{up.gateway_url}/console/")
    page.get_by_test_id("login-email").fill(email or up.admin_email)
    page.get_by_test_id("login-password").fill(password or up.admin_password)
    page.get_by_test_id("login-submit").click()


def instance_row(page: Page, instance: str) -> Any:
    return page.locator(f'[data-testid="instance-row"][data-instance-id="{instance}"]')


def test_an_admin_sees_every_service_and_instance_and_one_gone_then_back(
    up: RunningSystem, page: Page, problems: list[str], screenshot: Shot
) -> None:
    sign_in(page, up)
    expect(page.get_by_test_id("admin-name")).to_have_attribute("title", up.admin_email)
    rows = page.get_by_test_id("service-row")
    expect(rows.first).to_be_visible()
    services = {rows.nth(i).get_attribute("data-service") for i in range(rows.count())}
    # Every service's instances (a row of figures alone may be there too: the gateway's, once
    # Prometheus has seen it answer).
    registered = {service.name for service in catalogue.CATALOGUE}
    assert services >= registered
    for service in registered:
        for n in (1, 2):
            expect(instance_row(page, f"{service}-{n}")).to_be_visible()
    # Once Prometheus has scraped them, the queues' figures (the page refreshes itself).
    expect(page.get_by_test_id("queue-row").first).to_be_visible(timeout=60_000)
    screenshot(page, "console-live")

    # A hung instance stops renewing its lease: gone from the page within seconds (no reload:
    # the page refreshes itself), and back once it runs again.
    up.pause("inventory-2")
    try:
        expect(instance_row(page, "inventory-2")).to_have_count(0, timeout=20_000)
    finally:
        up.resume("inventory-2")
    expect(instance_row(page, "inventory-2")).to_have_count(1, timeout=20_000)

    # A killed one is replaced by its supervisor: the replacement appears, started anew.
    def started() -> str:
        return instance_row(page, "order-2").locator("td").nth(3).inner_text()

    before = started()
    up.kill("order-2")
    eventually(
        lambda: instance_row(page, "order-2").count() == 1 and started() != before,
        timeout_s=30, what="order-2's replacement on the page",
    )  # fmt: skip
    assert problems == []


def test_an_admin_follows_an_order_from_placement_to_approval(
    up: RunningSystem, page: Page, rest: Rest, screenshot: Shot
) -> None:
    _, token = rest.customer()
    order_id = rest.order(token)
    eventually(lambda: rest.status_of(token, order_id) == "ORDER_STATUS_APPROVED",
               timeout_s=20, what="the order approved")  # fmt: skip
    sign_in(page, up)
    page.goto(f"{up.gateway_url}/console/story?id={order_id}")

    expect(page.get_by_test_id("story-saga")).to_have_text(order_id)
    entries = page.get_by_test_id("story-entry")
    expect(entries.first).to_be_visible()
    screenshot(page, "console-story")

    def seen() -> set[tuple[str | None, str | None, str | None]]:
        return {
            (e.get_attribute("data-source"), e.get_attribute("data-kind"),
             e.get_attribute("data-service"))
            for e in entries.all()
        }  # fmt: skip

    hops = seen()
    # Each step of the saga, the messages of each hop with the service that sent or handled
    # them, and the log lines of every process that took part.
    assert ("saga", "saga started", "order") in hops
    assert ("saga", "saga ended", "order") in hops
    assert ("message", "published", "order") in hops
    assert ("message", "processed", "inventory") in hops
    assert ("message", "processed", "user") in hops
    assert ("message", "processed", "notification") in hops
    logged = {service for source, _, service in hops if source == "log"}
    assert {"order", "inventory", "user"} <= logged
    # In time order.
    times = [e.locator("time").get_attribute("datetime") for e in entries.all()]
    assert times == sorted(times)


def test_a_message_a_consumer_failed_on_is_replayed_from_the_console_and_applied_once(
    up: RunningSystem, page: Page, rest: Rest, screenshot: Shot
) -> None:
    """A fault turned on (ordermesh.switches): the notification service's handler fails on order
    approvals; the approval is retried, then dead-lettered. With the fault off, the admin
    replays it from the console: the customer is notified of the order once."""
    flags = str(up.run_dir / "services" / "flags.json")
    fault = ("handler-fails", "--queue", "notification.events", "--type", "order.v2.OrderApproved")
    _, token = rest.customer()

    def notified(order_id: str) -> list[dict[str, Any]]:
        listed = rest.ok("GET", "/v1/notifications?pageSize=100", token=token)["notifications"]
        return [n for n in listed if n["subjectId"] == order_id]

    up.tool("ordermesh.switches", "on", *fault, "--file", flags)
    try:
        order_id = rest.order(token)
        eventually(lambda: rest.status_of(token, order_id) == "ORDER_STATUS_APPROVED",
                   timeout_s=20, what="the order approved")  # fmt: skip
        sign_in(page, up)
        page.goto(f"{up.gateway_url}/console/messages?service=notification")
        row = page.locator('[data-testid="dead-letter-row"]').filter(has_text="OrderApproved")

        def dead_lettered() -> bool:
            page.reload()
            return row.count() == 1

        # Its retries take 1 + 5 + 30 s (the subscription's backoff) before it is given up.
        eventually(dead_lettered, timeout_s=90, what="the approval in the dead letters")
        expect(row).to_contain_text("InjectedFault")
        screenshot(page, "console-dead-letters")
    finally:
        up.tool("ordermesh.switches", "off", "handler-fails", "--file", flags)
    assert notified(order_id) == []

    row.get_by_test_id("select-dead-letter").check()
    page.get_by_test_id("dead-letters-form").get_by_test_id("reason").fill("the fault is off")
    page.get_by_test_id("replay-selected").click()
    expect(page.get_by_test_id("flash")).to_contain_text("1")
    eventually(lambda: len(notified(order_id)) == 1, timeout_s=20, what="the customer notified")
    expect(row).to_have_count(0)
    # Once: a redelivery would be absorbed by the inbox, and nothing more arrives meanwhile.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert len(notified(order_id)) == 1
        time.sleep(0.5)


def test_a_fault_switch_is_turned_on_and_off_from_the_console_and_the_gateway_obeys_at_once(
    up: RunningSystem, page: Page, rest: Rest, screenshot: Shot
) -> None:
    """The admin makes the gateway abort every order placed (gateway-aborts, 503) from the
    console's page of faults, without a restart: customers' orders are refused while the live
    page says which switch is on and the command line lists it, and pass again once the admin
    turns it off."""
    flags = str(up.run_dir / "services" / "flags.json")
    _, token = rest.customer()
    products = rest.ok("GET", "/v1/products?pageSize=100")["products"]
    product_id = next(p for p in products if int(p["availableStock"]) > 0)["productId"]

    def placing() -> int:
        order = {"idempotencyKey": str(uuid.uuid4()),
                 "items": [{"productId": product_id, "quantity": 1}]}  # fmt: skip
        return rest.call("POST", "/v1/orders", order, token=token)[0]

    def listed() -> dict[str, Any]:
        lines = up.tool("ordermesh.switches", "list", "--file", flags).splitlines()
        return {e["switch"]: e for e in map(json.loads, lines)}

    sign_in(page, up)
    page.get_by_test_id("nav-faults").click()
    row = page.locator('[data-testid="switch-row"][data-switch="gateway-aborts"]')
    expect(row.get_by_test_id("switch-state")).to_have_text("off")
    try:
        row.get_by_test_id("switch-open").click()
        form = row.get_by_test_id("switch-on-form")
        form.get_by_test_id("field-service").fill("order")
        form.get_by_test_id("field-method").fill("PlaceOrder")
        form.get_by_test_id("field-http_status").fill("503")
        form.get_by_test_id("reason").fill("watch the shop refuse orders")
        form.get_by_test_id("switch-on").click()
        expect(page.get_by_test_id("flash")).to_contain_text(
            "Turned gateway-aborts on for service=order, method=PlaceOrder"
        )
        expect(row.get_by_test_id("switch-state")).to_have_text("on")
        entry = listed()["gateway-aborts"]
        assert entry["on"], entry
        assert entry["where"] == {"service": "order", "method": "PlaceOrder"}
        assert entry["settings"] == {"percent": 100.0, "http_status": 503}
        eventually(lambda: placing() == 503, timeout_s=10, what="orders aborted at the gateway")
        assert rest.call("GET", "/v1/products?pageSize=1")[0] == 200  # the rest still answers
        page.get_by_test_id("nav-live").click()
        expect(
            page.locator('[data-testid="fault-on"][data-switch="gateway-aborts"]')
        ).to_contain_text("method=PlaceOrder")
        screenshot(page, "console-faults-on")
        page.get_by_test_id("nav-faults").click()
        row.get_by_test_id("switch-open").click()
        off = row.get_by_test_id("switch-off-form")
        off.get_by_test_id("reason").fill("seen enough")
        off.get_by_test_id("switch-off").click()
        expect(page.get_by_test_id("flash")).to_contain_text("Turned gateway-aborts off")
        expect(row.get_by_test_id("switch-state")).to_have_text("off")
    finally:
        up.tool("ordermesh.switches", "off", "gateway-aborts", "--file", flags)
    assert not listed()["gateway-aborts"]["on"]
    eventually(lambda: placing() == 200, timeout_s=10, what="orders placed again")


def test_a_parked_saga_is_resolved_from_the_console_and_its_history_names_who_and_why(
    up: RunningSystem, page: Page, rest: Rest, screenshot: Shot
) -> None:
    """Credit never answers, then neither does the stock's release: the saga is parked for an
    operator (make up here times a step out after SAGA_STEP_TIMEOUT_S and gives up a
    compensation after SAGA_COMPENSATION_SENDS sends: tests/browser/conftest.py). The admin
    resolves it before the participants answer again; their late replies change nothing."""
    _, token = rest.customer()
    credentials = {"email": up.admin_email, "password": up.admin_password}
    admin = rest.ok("POST", "/v1/auth/login", credentials)["tokens"]["accessToken"]
    admin_user_id = str(rest.ok("GET", "/v1/users/me", token=admin)["profile"]["userId"])
    sign_in(page, up)  # before the user service hangs: signing in asks it
    expect(page.get_by_test_id("admin-name")).to_be_visible()
    hung: list[str] = []
    try:
        for name in ("user-1", "user-2"):
            up.pause(name)
            hung.append(name)
        order_id = rest.order(token)

        def stock_reserved() -> bool:
            saga = rest.ok("GET", f"/v1/ops/order/sagas/{order_id}", token=admin)
            return any(e.get("messageType") == "inventory.v1.StockReserved"
                       for e in saga.get("history", []))  # fmt: skip

        eventually(stock_reserved, timeout_s=20, every_s=0.1, what="the stock reserved")
        for name in ("inventory-1", "inventory-2"):
            up.pause(name)
            hung.append(name)
        page.goto(f"{up.gateway_url}/console/sagas?service=order&status=NEEDS_OPERATOR")
        row = page.locator(f'[data-testid="saga-row"][data-saga-id="{order_id}"]')

        def parked() -> bool:
            page.reload()
            return row.count() == 1

        eventually(parked, timeout_s=60, what="the saga parked for an operator")
        row.get_by_test_id("open-saga").click()
        expect(page.get_by_test_id("saga-status")).to_have_text("NEEDS_OPERATOR")
        page.get_by_test_id("resolve-reason").fill("stock released by hand in the warehouse")
        page.get_by_test_id("resolve-saga").click()

        expect(page.get_by_test_id("saga-status")).to_have_text("COMPENSATED")
        resolved = page.locator('[data-testid="saga-history-entry"][data-kind="operator resolved"]')
        expect(resolved).to_contain_text("stock released by hand in the warehouse")
        expect(resolved).to_contain_text(admin_user_id)
        screenshot(page, "console-saga")
    finally:
        for name in hung:
            up.resume(name)
    # The participants answer again; their late replies change nothing.
    eventually(lambda: rest.call("GET", "/v1/users/me", token=token)[0] == 200,
               timeout_s=20, what="the user service answering again")  # fmt: skip
    page.reload()
    expect(page.get_by_test_id("saga-status")).to_have_text("COMPENSATED")
    assert rest.status_of(token, order_id) == "ORDER_STATUS_REJECTED"


def test_a_customer_opens_neither_the_console_nor_an_admin_rpc_and_nothing_works_unsigned(
    up: RunningSystem, page: Page, rest: Rest
) -> None:
    email, token = rest.customer()
    sign_in(page, up, email, PASSWORD)
    expect(page.get_by_test_id("login-error")).to_be_visible()
    page.goto(f"{up.gateway_url}/console/")
    assert page.url.endswith("/console/login")  # no session was made
    for path in ("/v1/ops/order/sagas", "/v1/ops/inventory/dead-letters"):
        assert rest.call("GET", path, token=token)[0] == 403
        assert rest.call("GET", path)[0] == 401

    # Without a session: pages and actions lead to the sign-in (an action not done), htmx's
    # fragments are refused, even from the console's own origin.
    same_origin = {"origin": up.gateway_url}
    answer = rest.raw("GET", "/console/sagas?service=order")
    assert answer.status == 303
    assert answer.headers["location"].endswith("/console/login")
    assert rest.raw("GET", "/console/fragments/live", headers={"hx-request": "true"}).status == 401
    replay = rest.raw(
        "POST", "/console/messages/order/dead-letters/replay",
        form={"chosen": "order.saga.dlq|x", "reason": "no session"}, headers=same_origin,
    )  # fmt: skip
    assert replay.status == 303
    assert replay.headers["location"].endswith("/console/login")
    switch = rest.raw(
        "POST", "/console/faults/rpc-errors/on",
        form={"service": "order", "reason": "no session"}, headers=same_origin,
    )  # fmt: skip
    assert switch.status == 303
    assert not any(e["on"] for e in map(json.loads, up.tool(
        "ordermesh.switches", "list", "--file", str(up.run_dir / "services" / "flags.json")
    ).splitlines()))  # fmt: skip
    # A page carries its content security policy.
    policy = rest.raw("GET", "/console/login").headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
