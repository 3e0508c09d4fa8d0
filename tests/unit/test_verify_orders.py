"""make verify's customers send again an order refused UNAVAILABLE, with its idempotency key (the
service applies it once however often it comes), at most twice; what else they are answered
stands (tools.verify.orders)."""

from __future__ import annotations

from typing import Any

import pytest

from tools.verify import orders
from tools.verify.api import Answer
from tools.verify.claims import availability


class Answers:
    """A gateway that answers each POST /v1/orders with the next status given."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.keys: list[str] = []

    async def call(self, method: str, path: str, body: Any = None, **_: Any) -> Answer:
        assert (method, path) == ("POST", "/v1/orders")
        self.keys.append(body["idempotencyKey"])
        status = self.statuses.pop(0)
        return Answer(status, {"order": {"orderId": "o-1"}} if status == 200 else {"code": 14})


def _orders(api: Answers) -> orders.Orders:
    customer = orders.Customer("ada@example.test", "u-1", "token", api)  # type: ignore[arg-type]
    placed = orders.Orders("run", [customer], "p-1")
    placed.begin()
    return placed


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(orders, "RESENT_AFTER_S", (0.0, 0.0))


async def test_an_order_refused_unavailable_is_sent_again_with_its_key():
    api = Answers(503, 200)

    order = await _orders(api).place(0)

    assert (order.status, order.attempts, order.order_id) == (200, 2, "o-1")
    assert api.keys == [order.key, order.key]
    assert "1 of them when sent again" in availability([order]).value


async def test_it_is_sent_three_times_at_most_and_counts_against_availability():
    api = Answers(503, 503, 503, 200)

    order = await _orders(api).place(0)

    assert (order.status, order.attempts) == (503, 3)
    assert not availability([order]).passed


async def test_any_other_refusal_is_not_sent_again():
    api = Answers(400, 200)

    order = await _orders(api).place(0)

    assert (order.status, order.attempts) == (400, 1)
