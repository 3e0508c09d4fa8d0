"""Systems of their own for test modules that break things (kill, stop Redis, hit limits), and
the steady traffic they send through the gateway while they do."""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis
from harness.shop import Shop
from harness.system import System
from tools.verify.orders import Orders


@contextmanager
def own_system(
    rabbitmq: PrivateRabbitMQ, directory: Path, **env: str
) -> Iterator[tuple[PrivateRedis, System]]:
    """A system a test module may break: its own Redis (registry and counters) and services
    (on a vhost of the session's broker), started here and removed at the end."""
    redis = PrivateRedis(directory / "redis")
    redis.start()
    system = System(
        directory / "system",
        amqp_url=rabbitmq.add_vhost(directory.name),
        env={"REDIS_URL": redis.url, **env},
    )
    try:
        system.start()
        yield redis, system
    finally:
        system.stop()
        redis.remove()


RATE = 100  # requests per second


class Traffic:
    """Requests at a fixed rate through the gateway: public and authenticated reads, and orders.
    With `orders` (make verify's, tools.verify.orders), each order is placed by it, with its
    customer and a correlation id of its own, so that make verify's claims reconcile them."""

    def __init__(self, base: str, token: str, product_id: str, *, orders: Orders | None = None):
        self.base = base
        self.auth = {"authorization": f"Bearer {token}"}
        self.product_id = product_id
        self.orders = orders
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        # The orders the gateway accepted, and the idempotency key of every order sent.
        self.accepted: list[str] = []
        self.keys: list[str] = []
        # (seconds from the start when it was sent, answered?) of each request, for the picture.
        self.timeline: list[tuple[float, bool]] = []
        self.started = time.perf_counter()

    async def one(self, http: aiohttp.ClientSession, n: int) -> None:
        sent = time.perf_counter() - self.started
        kind = ("browse", "browse", "browse", "mine", "me", "order")[n % 6]
        if kind == "order" and self.orders is not None:
            placed = await self.orders.place(n)
            self.keys.append(placed.key)
            if placed.accepted:
                self.accepted.append(placed.order_id)
            ok = placed.status == 200
            self.outcomes["ok" if ok else "failed"] += 1
            self.timeline.append((sent, ok))
            if not ok:
                self.failures.append(f"order {placed.status or '-'} {placed.error[:200]}")
            return
        try:
            if kind == "browse":
                request = http.get(f"{self.base}/v1/products?pageSize=5")
            elif kind == "mine":
                request = http.get(f"{self.base}/v1/orders?pageSize=5", headers=self.auth)
            elif kind == "me":
                request = http.get(f"{self.base}/v1/users/me", headers=self.auth)
            else:
                key = str(uuid.uuid4())
                self.keys.append(key)
                body = {
                    "idempotencyKey": key,
                    "items": [{"productId": self.product_id, "quantity": 1}],
                }
                request = http.post(f"{self.base}/v1/orders", json=body, headers=self.auth)
            async with request as response:
                text = await response.text()
                ok = response.status == 200
                if ok and kind == "order":
                    self.accepted.append((await response.json())["order"]["orderId"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, text = False, f"{type(exc).__name__}: {exc}"
            response = None
        self.outcomes["ok" if ok else "failed"] += 1
        self.timeline.append((sent, ok))
        if not ok:
            status = response.status if response is not None else "-"
            self.failures.append(f"{kind} {status} {text[:200]}")

    async def run(self, seconds: float, *, until: asyncio.Event | None = None) -> None:
        """Sends at RATE for `seconds` (or until `until` is set), then waits for every answer."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            tasks = []
            started = self.started = time.perf_counter()
            if self.orders is not None:
                self.orders.begin()
            for n in range(int(seconds * RATE)):
                if until is not None and until.is_set():
                    break
                delay = started + n / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self.one(http, n)))
            await asyncio.gather(*tasks)

    def success_rate(self) -> float:
        return self.outcomes["ok"] / sum(self.outcomes.values())


STOCK = 100_000


async def customer(system: System) -> tuple[str, str, str]:
    """A customer's token and user id, and a product of price 1 with STOCK in stock."""
    shop = Shop(system)
    try:
        session = await shop.register()
        product = await shop.product(price_minor=1, stock=STOCK)
    finally:
        await shop.close()
    return session.access_token, session.user_id, product.product_id
