"""Proxies for the services the order service talks to: inventory by gRPC (prices, now), and
the saga's participants by command (each command built here, from the saga's data)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import grpc.aio
from common.v1 import money_pb2
from inventory.v1 import commands_pb2 as inventory_commands
from inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from ordermesh.errors import InvalidArgument, Unavailable
from ordermesh.upstream import Upstream
from user.v1 import commands_pb2 as user_commands


class InventoryClient:
    """Reads products from the inventory service's instances (see ordermesh.upstream: deadlines,
    retries of these idempotent reads on another instance, a circuit breaker).

    A product's name and price are remembered for `cache_s`: an order placed within that time
    of another gets the price that one got. Stock is never read here; the saga reserves it.
    """

    def __init__(
        self,
        inventory: Upstream,
        *,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._inventory = inventory
        self._cache_s = cache_s
        self._clock = clock
        self._cached: dict[str, tuple[float, dict[str, Any]]] = {}

    async def product(self, product_id: str) -> dict[str, Any]:
        cached = self._cached.get(product_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        product = await self._fetch(product_id)
        if len(self._cached) > 10_000:
            self._cached.clear()
        self._cached[product_id] = (self._clock() + self._cache_s, product)
        return product

    async def _fetch(self, product_id: str) -> dict[str, Any]:
        request = inventory_service_pb2.GetProductRequest(product_id=product_id)
        try:
            response = await self._inventory.call(
                lambda channel, timeout_s: inventory_service_pb2_grpc.InventoryServiceStub(
                    channel
                ).GetProduct(request, timeout=timeout_s),
                idempotent=True,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise InvalidArgument(f"product {product_id!r} does not exist") from None
            raise Unavailable(
                f"inventory could not price product {product_id!r}: {exc.code().name}"
            ) from None
        product = response.product
        return {
            "name": product.name,
            "price_minor": product.price.amount_minor,
            "currency": product.price.currency_code,
        }


# -- commands to the saga's participants, from the saga's data ----------------------------


def reserve_stock(data: Mapping[str, Any]) -> inventory_commands.ReserveStock:
    return inventory_commands.ReserveStock(
        order_id=data["order_id"],
        lines=[
            inventory_commands.StockLine(product_id=line["product_id"], quantity=line["quantity"])
            for line in data["lines"]
        ],
    )


def release_stock(data: Mapping[str, Any]) -> inventory_commands.ReleaseStock:
    return inventory_commands.ReleaseStock(order_id=data["order_id"], reason="order saga undone")


def reserve_credit(data: Mapping[str, Any]) -> user_commands.ReserveCredit:
    return user_commands.ReserveCredit(
        order_id=data["order_id"],
        user_id=data["user_id"],
        amount=money_pb2.Money(amount_minor=data["total_minor"], currency_code=data["currency"]),
    )


def release_credit(data: Mapping[str, Any]) -> user_commands.ReleaseCredit:
    return user_commands.ReleaseCredit(
        order_id=data["order_id"], user_id=data["user_id"], reason="order saga undone"
    )
