"""The users `make load` runs against the gateway (Locust): shoppers and visitors, through the
public API only (REST and GraphQL), as a person would use the storefront.

- A `Shopper` registers with an address of its own, signs in, and then browses the catalogue,
  looks at products, places orders and follows each until the saga decides it, cancels some
  of those approved, reads its notifications and its orders, and reads through GraphQL. An
  order the saga rejects (out of stock, not enough credit) is an answer, not a failure; a
  request fails when the gateway answers an error, or an order is still pending after
  `DECIDED_WITHIN_S`.
- A `Visitor` browses without signing in.

Each user speaks from an address of its own when the gateway is on loopback (127.0.0.2 and
up; `--addresses`), so the gateway's limits per client address (sign-in attempts, writes)
apply to each user as they would to people on their own machines; against a gateway elsewhere
every user shares this machine's address and its limits. A 429 is counted as a failure with
the limit it met (`x-ordermesh-limit`).

Options of its own (beside Locust's): `--task-rate` (tasks per second of each user; 0: each
waits 1-3 s between tasks), `--addresses` (how many loopback addresses the users spread over),
`--gateway-ca` (the CA that issued the gateway's certificate; `make up`'s by default).
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from locust import HttpUser, between, constant_throughput, events, task
from requests.adapters import HTTPAdapter

# How long an order may stay PENDING before the wait counts as a failure, and how often it is
# asked for meanwhile.
DECIDED_WITHIN_S = 10.0
ASK_EVERY_S = 0.1
PASSWORD = "a load password"
# An access token lives 15 min (the user service's default): renewed well before.
RENEW_AFTER_S = 600.0
PENDING = "ORDER_STATUS_PENDING"
APPROVED = "ORDER_STATUS_APPROVED"

PRODUCTS_QUERY = """query Products($first: Int!) {
  products(first: $first) {
    products { productId name price { amountMinor currencyCode } availableStock }
  }
}"""
ME_QUERY = "query Me { me { userId email displayName } }"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--task-rate",
        type=float,
        default=0.0,
        help="tasks per second of each user (0: 1-3 s apart)",
    )
    parser.add_argument(
        "--addresses", type=int, default=200, help="loopback addresses the users spread over"
    )
    parser.add_argument("--gateway-ca", default="", help="the CA of the gateway's certificate")


_next_address = itertools.count()


def _source_address(host: str, spread: int) -> str | None:
    """The loopback address the next user speaks from, when the gateway is on loopback."""
    try:
        on_loopback = ipaddress.ip_address(urlsplit(host).hostname or "").is_loopback
    except ValueError:
        on_loopback = urlsplit(host).hostname == "localhost"
    if not on_loopback or spread <= 0:
        return None
    return str(ipaddress.ip_address("127.0.0.2") + next(_next_address) % spread)


def _wait_time(user: HttpUser) -> float:
    rate = user.environment.parsed_options.task_rate if user.environment.parsed_options else 0.0
    if rate > 0:
        return float(constant_throughput(rate)(user))
    return float(between(1, 3)(user))


class _GatewayUser(HttpUser):
    abstract = True
    wait_time = _wait_time

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        if options and options.gateway_ca:
            self.client.verify = options.gateway_ca
        source = _source_address(self.host or "", options.addresses if options else 0)
        if source:
            for scheme in ("http://", "https://"):
                self.client.mount(scheme, _FromAddress(source))

    def _json(
        self,
        method: str,
        path: str,
        name: str,
        problem: Callable[[dict[str, Any]], str | None] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """One request; its JSON answer, or None when it failed (recorded as a failure with the
        reason: the status and the start of the body, the limit a 429 met, or `problem`'s)."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            if r.status_code == 429:
                r.failure(f"429 ({r.headers.get('x-ordermesh-limit', 'a limit')})")
                return None
            if not r.ok:
                r.failure(f"{r.status_code} {r.text[:200]}")
                return None
            try:
                answer: dict[str, Any] = r.json()
            except ValueError:
                r.failure(f"{r.status_code}, not JSON")
                return None
            reason = problem(answer) if problem else None
            if reason:
                r.failure(reason)
                return None
            r.success()
            return answer


class _FromAddress(HTTPAdapter):
    """Connections made from one local address."""

    def __init__(self, source: str):
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


class Visitor(_GatewayUser):
    """Browses the catalogue without signing in."""

    weight = 1

    @task(3)
    def browse(self) -> None:
        self._json("GET", "/v1/products?pageSize=20", "GET /v1/products")

    @task(1)
    def look(self) -> None:
        page = self._json("GET", "/v1/products?pageSize=20", "GET /v1/products")
        if page and page.get("products"):
            product = random.choice(page["products"])
            self._json("GET", f"/v1/products/{product['productId']}", "GET /v1/products/{id}")


class Shopper(_GatewayUser):
    """Registers, signs in, and shops."""

    weight = 4

    def on_start(self) -> None:
        self.email = f"load-{uuid.uuid4().hex[:12]}@example.com"
        self.registered = False
        self.token, self.refresh_token, self.token_at = "", "", 0.0
        self.products: list[dict[str, Any]] = []
        self.approved: list[str] = []
        self._signed_in()

    def _signed_in(self) -> bool:
        """Registered and holding an access token not near its end: registers, signs in, or
        refreshes as needed (each a sign-in attempt the gateway limits per address)."""
        if not self.registered:
            self.registered = (
                self._json(
                    "POST",
                    "/v1/users",
                    "POST /v1/users",
                    json={"email": self.email, "password": PASSWORD, "displayName": "Load"},
                )
                is not None
            )
            if not self.registered:
                return False
        if self.token and time.monotonic() - self.token_at < RENEW_AFTER_S:
            return True
        if self.refresh_token:
            answer = self._json(
                "POST",
                "/v1/auth/refresh",
                "POST /v1/auth/refresh",
                json={"refreshToken": self.refresh_token},
            )
        else:
            answer = self._json(
                "POST",
                "/v1/auth/login",
                "POST /v1/auth/login",
                json={"email": self.email, "password": PASSWORD},
            )
        if answer is None:
            self.token = self.refresh_token = ""
            return False
        tokens = answer["tokens"]
        self.token, self.refresh_token = tokens["accessToken"], tokens["refreshToken"]
        self.token_at = time.monotonic()
        return True

    def _signed(self, method: str, path: str, name: str, **kwargs: Any) -> dict[str, Any] | None:
        if not self._signed_in():
            return None
        headers = {"authorization": f"Bearer {self.token}"}
        return self._json(method, path, name, headers=headers, **kwargs)

    @task(4)
    def browse(self) -> None:
        page = self._json("GET", "/v1/products?pageSize=20", "GET /v1/products")
        if page:
            self.products = page.get("products", [])

    @task(2)
    def look(self) -> None:
        if self.products:
            product = random.choice(self.products)
            self._json("GET", f"/v1/products/{product['productId']}", "GET /v1/products/{id}")

    @task(3)
    def order(self) -> None:
        in_stock = [p for p in self.products if int(p.get("availableStock", 0)) > 0]
        if not in_stock:
            self.browse()
            return
        product = random.choice(in_stock)
        body = {
            "idempotencyKey": str(uuid.uuid4()),
            "items": [{"productId": product["productId"], "quantity": random.randint(1, 2)}],
        }
        placed = self._signed("POST", "/v1/orders", "POST /v1/orders", json=body)
        if placed is None:
            return
        self._follow(placed["order"]["orderId"])

    def _follow(self, order_id: str) -> None:
        """Asks for the order until the saga decided it; a wait past DECIDED_WITHIN_S fails."""
        started = time.perf_counter()
        while time.perf_counter() - started < DECIDED_WITHIN_S:
            answer = self._signed("GET", f"/v1/orders/{order_id}", "GET /v1/orders/{id}")
            if answer is None:
                return
            status = answer["order"]["status"]
            if status != PENDING:
                elapsed_ms = (time.perf_counter() - started) * 1000
                self.environment.events.request.fire(
                    request_type="SAGA",
                    name=f"decided {status.removeprefix('ORDER_STATUS_')}",
                    response_time=elapsed_ms,
                    response_length=0,
                    exception=None,
                    context={},
                )
                if status == APPROVED:
                    self.approved.append(order_id)
                return
            time.sleep(ASK_EVERY_S)
        self.environment.events.request.fire(
            request_type="SAGA",
            name="decided",
            response_time=DECIDED_WITHIN_S * 1000,
            response_length=0,
            exception=TimeoutError(f"order {order_id} pending after {DECIDED_WITHIN_S:.0f} s"),
            context={},
        )

    @task(1)
    def cancel(self) -> None:
        if self.approved:
            order_id = self.approved.pop(random.randrange(len(self.approved)))
            self._signed(
                "POST",
                f"/v1/orders/{order_id}:cancel",
                "POST /v1/orders/{id}:cancel",
                json={"reason": "changed my mind"},
            )

    @task(1)
    def notifications(self) -> None:
        self._signed("GET", "/v1/notifications", "GET /v1/notifications")

    @task(1)
    def my_orders(self) -> None:
        self._signed("GET", "/v1/orders?pageSize=20", "GET /v1/orders")

    @task(2)
    def graphql(self) -> None:
        query = random.choice(
            [
                {"query": PRODUCTS_QUERY, "variables": {"first": 20}, "operationName": "Products"},
                {"query": ME_QUERY, "operationName": "Me"},
            ]
        )
        self._signed(
            "POST",
            "/graphql",
            f"POST /graphql {query['operationName']}",
            problem=_graphql_errors,
            json=query,
        )


def _graphql_errors(answer: dict[str, Any]) -> str | None:
    errors = answer.get("errors")
    return f"GraphQL: {errors[0].get('message', '')}" if errors else None
