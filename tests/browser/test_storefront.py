"""The storefront in Chromium, on the system `make up` runs: a customer opens the gateway's
root, registers, orders from the catalogue and watches the order's saga approve it (its steps
and the notification sent appear without a reload), cancels it and sees the stock back; an
order for more than is in stock is rejected with the reason shown; and a session that ends
(signed out in another tab, or its refresh token revoked) sends the customer to sign in again,
saying so, with nothing of theirs shown. Every call the pages make goes through the gateway's
public REST API; nothing here is faked."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.system import RunningSystem, eventually

Shot = Callable[[Page, str], None]

PASSWORD = "a long enough passphrase"


class Admin:
    """The admin, over the gateway's REST API: makes products of its own for a test."""

    def __init__(self, up: RunningSystem):
        self.base = up.gateway_url
        self.tls = ssl.create_default_context(cafile=str(up.ca_file))
        tokens = self.call("POST", "/v1/auth/login",
                           {"email": up.admin_email, "password": up.admin_password})  # fmt: skip
        self.token = tokens["tokens"]["accessToken"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"content-type": "application/json",
                     **({"authorization": f"Bearer {self.token}"} if hasattr(self, "token")
                        else {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, context=self.tls, timeout=10) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as refused:
            raise AssertionError(f"{method} {path}: {refused.code} {refused.read()!r}") from None

    def product(self, name: str, stock: int) -> dict[str, Any]:
        sku = f"SHOP-{uuid.uuid4().hex[:8].upper()}"
        created = self.call("POST", "/v1/products", {
            "sku": sku, "name": name, "description": "made by a storefront test",
            "price": {"amountMinor": "1250", "currencyCode": "EUR"}, "initialStock": str(stock),
        })  # fmt: skip
        return dict(created["product"])


@pytest.fixture(scope="module")
def admin(up: RunningSystem) -> Admin:
    return Admin(up)


def register(page: Page, up: RunningSystem, name: str = "Grace") -> str:
    """A new customer, registered through the shop from its root; signed in. Their e-mail."""
    email = f"shop-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"{up.gateway_url}/")
    expect(page).to_have_url(f"{up.gateway_url}/shop/")
    page.get_by_test_id("nav-register").click()
    page.get_by_test_id("name").fill(name)
    page.get_by_test_id("email").fill(email)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("register").click()
    expect(page.get_by_test_id("customer-name")).to_have_text(name)
    return email


def row_of(page: Page, product: dict[str, Any]) -> Any:
    return page.locator(f'[data-testid="product"][data-sku="{product["sku"]}"]')


def order(page: Page, product: dict[str, Any], quantity: int) -> None:
    """From the catalogue: `quantity` of `product`, delivered to an address in Lyon."""
    page.goto(f"{page.url.split('/shop/')[0]}/shop/")
    row_of(page, product).get_by_test_id("quantity").fill(str(quantity))
    page.get_by_test_id("address-line").fill("12 rue de la Paix")
    page.get_by_test_id("locality").fill("Lyon")
    page.get_by_test_id("postal-code").fill("69001")
    page.get_by_test_id("region-code").fill("FR")
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("progress")).to_be_visible()


def test_a_customer_registers_orders_watches_it_approved_and_cancels_it(
    up: RunningSystem, page: Page, problems: list[str], admin: Admin, screenshot: Shot
) -> None:
    teapot = admin.product("Storefront teapot", stock=5)
    register(page, up)
    expect(row_of(page, teapot).get_by_test_id("stock")).to_have_text("5")
    screenshot(page, "storefront-catalogue")

    order(page, teapot, 2)
    # The page follows the saga by itself (no reload): pending first or already decided, then
    # approved, with each step of the saga and the notification the customer was sent.
    progress = page.get_by_test_id("progress")
    expect(progress).to_have_attribute("data-state", "APPROVED", timeout=30_000)
    expect(page.get_by_test_id("order-total")).to_have_text("25.00 EUR")
    kinds = {s.get_attribute("data-kind") for s in page.get_by_test_id("step").all()}
    assert {"SAGA_STARTED", "COMMAND_SENT", "REPLY_RECEIVED", "SAGA_ENDED"} <= kinds, kinds
    expect(page.get_by_test_id("notification").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("order-reason")).to_have_count(0)
    screenshot(page, "storefront-order-approved")

    # The stock the order took is gone from the catalogue.
    page.get_by_test_id("nav-catalogue").click()
    expect(row_of(page, teapot).get_by_test_id("stock")).to_have_text("3")

    # My orders lists it; from there, cancel it: the stock comes back.
    page.get_by_test_id("nav-orders").click()
    expect(page.get_by_test_id("order-row")).to_have_count(1)
    page.get_by_test_id("order-row").get_by_role("link").click()
    page.get_by_test_id("cancel-reason").fill("changed my mind")
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("flash")).to_have_text("Your order is cancelled.")
    expect(progress).to_have_attribute("data-state", "CANCELLED")
    expect(page.get_by_test_id("order-reason")).to_have_text("changed my mind")
    expect(page.get_by_test_id("cancel")).to_have_count(0)

    def stock_back() -> bool:
        page.get_by_test_id("nav-catalogue").click()
        return row_of(page, teapot).get_by_test_id("stock").inner_text() == "5"

    eventually(stock_back, timeout_s=30, what="the cancelled order's stock released")
    page.get_by_test_id("nav-notifications").click()
    expect(page.get_by_test_id("notification").first).to_be_visible()

    # Signed out: the catalogue is still open, the orders are not.
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("nav-sign-in")).to_be_visible()
    page.goto(f"{up.gateway_url}/shop/orders")
    expect(page).to_have_url(f"{up.gateway_url}/shop/login")
    assert problems == []


def test_an_order_for_more_than_is_in_stock_is_rejected_and_says_why(
    up: RunningSystem, page: Page, problems: list[str], admin: Admin, screenshot: Shot
) -> None:
    scarce = admin.product("Storefront last cup", stock=1)
    register(page, up, name="Lin")
    order(page, scarce, 2)

    progress = page.get_by_test_id("progress")
    expect(progress).to_have_attribute("data-state", "REJECTED", timeout=30_000)
    expect(page.get_by_test_id("order-reason")).to_contain_text("2 requested, 1 available")
    expect(page.get_by_test_id("cancel")).to_have_count(0)  # nothing left to cancel
    screenshot(page, "storefront-order-rejected")
    # Nothing was taken from the stock.
    page.get_by_test_id("nav-catalogue").click()
    expect(row_of(page, scarce).get_by_test_id("stock")).to_have_text("1")
    assert problems == []


def sign_in(page: Page, email: str) -> None:
    page.get_by_test_id("email").fill(email)
    page.get_by_test_id("password").fill(PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("customer-name")).to_be_visible()


def test_a_session_that_ends_sends_the_customer_to_sign_in_again_and_shows_nothing_of_theirs(
    up: RunningSystem, page: Page, admin: Admin
) -> None:
    """The shop's sessions end after STOREFRONT_SESSION_TTL_S without use (15 s in this suite,
    tests/browser/conftest.py; an hour by default): the tab stays open, the customer comes back
    later."""
    idle_s = float(up.env["STOREFRONT_SESSION_TTL_S"]) + 2
    email = register(page, up, name="Ada")
    mug = admin.product("Storefront mug", stock=3)
    order(page, mug, 1)
    progress = page.get_by_test_id("progress")
    expect(progress).to_have_attribute("data-state", "APPROVED", timeout=30_000)
    order_page = page.url

    # Left alone past the session's life: the next page is the sign-in page, saying why, and
    # the browser no longer holds the session's cookie.
    page.wait_for_timeout(idle_s * 1000)
    page.get_by_test_id("nav-orders").click()
    expect(page).to_have_url(f"{up.gateway_url}/shop/login?ended=1")
    expect(page.get_by_test_id("account-error")).to_have_text(
        "Your session has ended. Sign in again."
    )
    assert not [c for c in page.context.cookies() if c["name"] == "storefront_session"]
    page.goto(order_page)
    expect(page).to_have_url(f"{up.gateway_url}/shop/login")
    expect(page.get_by_test_id("order-lines")).to_have_count(0)

    # Signed in again, the order is there. An action sent from the page after the session
    # ended (the cancel form) is not done: the customer is sent to sign in, and the order
    # stands.
    sign_in(page, email)
    page.goto(order_page)
    expect(page.get_by_test_id("cancel")).to_be_visible()
    page.wait_for_timeout(idle_s * 1000)
    page.get_by_test_id("cancel").click()
    expect(page).to_have_url(f"{up.gateway_url}/shop/login?ended=1")
    sign_in(page, email)
    page.goto(order_page)
    expect(progress).to_have_attribute("data-state", "APPROVED")
