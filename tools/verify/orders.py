"""The customers of a verification and their orders at a fixed rate.

Each customer registers and signs in from an address of its own (round robin over the
addresses), and orders one unit of the verification's product (price 1, so that its credit
holds for every order). Order n is customer n's (modulo), sent at `n / rate` seconds, with a
new idempotency key and a correlation id of its own (`verify-<run>-<n>`), which every message of
its flow carries, and which the claims then look the order up by. An order refused UNAVAILABLE
(503) is sent again with its idempotency key, as a client of an API with idempotency keys does
(the key makes it applied once however often it is sent), at most twice; one that still gets no
200 counts against availability, and the report counts those answered at a second or third
attempt."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from tools.verify.api import Api

__all__ = ["Customer", "Order", "Orders", "new_customers"]

PASSWORD = "verify-the-claims-1"
# The pauses before an order refused UNAVAILABLE is sent again (with the same idempotency key).
RESENT_AFTER_S = (0.5, 1.0)
UNAVAILABLE = 503  # gRPC's UNAVAILABLE, as the gateway's REST answers it


@dataclass
class Customer:
    email: str
    user_id: str
    token: str
    api: Api
    credit_before_minor: int = 0


async def new_customers(apis: list[Api], count: int, run: str) -> list[Customer]:
    """`count` new customers, the n-th speaking through `apis[n % len(apis)]`; a few at a time
    (each address signs in under the gateway's limit of sign-ins)."""

    async def one(n: int) -> Customer:
        api = apis[n % len(apis)]
        email = f"verify-{run}-{n}@ordermesh.example"
        credentials = {"email": email, "password": PASSWORD}
        await api.ok("POST", "/v1/users", {**credentials, "displayName": f"Verifier {n}"})
        tokens = (await api.ok("POST", "/v1/auth/login", credentials))["tokens"]
        token = str(tokens["accessToken"])
        profile = (await api.ok("GET", "/v1/users/me", token=token))["profile"]
        return Customer(
            email=email,
            user_id=str(profile["userId"]),
            token=token,
            api=api,
            credit_before_minor=int(profile["creditAvailable"]["amountMinor"]),
        )

    slots = asyncio.Semaphore(8)

    async def bounded(n: int) -> Customer:
        async with slots:
            return await one(n)

    return list(await asyncio.gather(*(bounded(n) for n in range(count))))


@dataclass
class Order:
    n: int
    customer: Customer
    key: str
    correlation_id: str
    sent_s: float  # seconds since the run began
    latency_ms: float = 0.0
    status: int = 0  # the HTTP status of PlaceOrder's last attempt; 0: no answer
    attempts: int = 0
    error: str = ""
    order_id: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == 200 and bool(self.order_id)


@dataclass
class Orders:
    """Orders at `rate` a second for `seconds`, by `customers` in turn, of `product_id`."""

    run_id: str
    customers: list[Customer]
    product_id: str
    placed: list[Order] = field(default_factory=list)
    started: float = 0.0

    def begin(self) -> None:
        """Starts the run's clock: order n is due `n / rate` seconds after it."""
        self.started = time.perf_counter()

    def now_s(self) -> float:
        return time.perf_counter() - self.started

    async def place(self, n: int) -> Order:
        """Places order n (its customer, a new idempotency key, its own correlation id), at
        once; what it was answered is in the order returned, which `placed` holds."""
        customer = self.customers[n % len(self.customers)]
        order = Order(n, customer, str(uuid.uuid4()), f"verify-{self.run_id}-{n}", self.now_s())
        self.placed.append(order)
        body = {
            "idempotencyKey": order.key,
            "items": [{"productId": self.product_id, "quantity": 1}],
        }
        begun = time.perf_counter()
        for pause in (*RESENT_AFTER_S, None):
            order.attempts += 1
            answer = await customer.api.call(
                "POST",
                "/v1/orders",
                body,
                token=customer.token,
                headers={"x-correlation-id": order.correlation_id},
            )
            if answer.status != UNAVAILABLE or pause is None:
                break
            await asyncio.sleep(pause)
        order.latency_ms = (time.perf_counter() - begun) * 1000
        order.status = answer.status
        if answer.ok:
            order.order_id = str(answer.body.get("order", {}).get("orderId", ""))
        else:
            order.error = answer.error or str(answer.body)[:300]
        return order

    async def run(self, rate: float, seconds: float) -> None:
        """Sends every order on time (each in a task of its own, from `begin()`), then waits for
        every answer."""
        tasks = []
        for n in range(int(rate * seconds)):
            delay = n / rate - self.now_s()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.place(n)))
        await asyncio.gather(*tasks)
