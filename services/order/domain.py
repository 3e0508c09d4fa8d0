"""Orders: what a valid order is, what it costs, and the states it moves through; no I/O.

PENDING --saga completed--> APPROVED --owner cancels--> CANCELLED
PENDING --saga failed-----> REJECTED (with the reason)
PENDING --owner cancels---> CANCELLED
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ordermesh.errors import FailedPrecondition, InvalidArgument

PENDING, APPROVED, REJECTED, CANCELLED = "PENDING", "APPROVED", "REJECTED", "CANCELLED"
MAX_LINES, MAX_QUANTITY, MAX_KEY = 100, 10_000, 128
REGION_CODE = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Item:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class Address:
    """Where an order is delivered (order.v2; orders placed through v1 have none)."""

    recipient: str
    address_lines: tuple[str, ...]
    locality: str
    postal_code: str
    region_code: str

    def as_document(self) -> dict[str, Any]:
        return {**asdict(self), "address_lines": list(self.address_lines)}


def checked_address(address: Address) -> Address:
    """A delivery address with what delivery needs, or InvalidArgument naming what is missing."""
    missing = [
        name
        for name, value in (
            ("recipient", address.recipient.strip()),
            ("address_lines", "".join(address.address_lines).strip()),
            ("locality", address.locality.strip()),
            ("region_code", address.region_code),
        )
        if not value
    ]
    if missing:
        raise InvalidArgument(f"delivery_address: {', '.join(missing)} required")
    if not REGION_CODE.fullmatch(address.region_code):
        raise InvalidArgument(
            f"delivery_address.region_code: {address.region_code!r} is not a CLDR region code "
            "(two capital letters, e.g. DE)"
        )
    return address


def check_idempotency_key(key: str) -> str:
    if not key or len(key) > MAX_KEY:
        raise InvalidArgument(f"idempotency_key must have 1 to {MAX_KEY} characters")
    return key


def merged_items(items: Sequence[Item]) -> list[Item]:
    """The items of an order, one per product (quantities added up), validated."""
    if not items:
        raise InvalidArgument("an order needs at least one item")
    quantities: dict[str, int] = {}
    for item in items:
        if not item.product_id:
            raise InvalidArgument("an item names no product_id")
        if item.quantity <= 0:
            raise InvalidArgument(f"quantity {item.quantity} of {item.product_id} is not positive")
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    if len(quantities) > MAX_LINES:
        raise InvalidArgument(f"an order has at most {MAX_LINES} products, not {len(quantities)}")
    for product_id, quantity in quantities.items():
        if quantity > MAX_QUANTITY:
            raise InvalidArgument(f"quantity {quantity} of {product_id} is above {MAX_QUANTITY}")
    return [Item(product_id, quantity) for product_id, quantity in quantities.items()]


def priced_lines(
    items: Sequence[Item], products: Mapping[str, Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int, str]:
    """The order's lines at current prices, its total and its currency (one per order)."""
    lines = []
    currencies = set()
    for item in items:
        product = products[item.product_id]
        currencies.add(product["currency"])
        lines.append(
            {
                "product_id": item.product_id,
                "product_name": product["name"],
                "quantity": item.quantity,
                "unit_price_minor": product["price_minor"],
            }
        )
    if len(currencies) != 1:
        raise InvalidArgument(
            f"an order's products must share a currency, not {sorted(currencies)}"
        )
    total = sum(line_total_minor(line) for line in lines)
    return lines, total, currencies.pop()


def line_total_minor(line: Mapping[str, Any]) -> int:
    return int(line["quantity"]) * int(line["unit_price_minor"])


def check_cancellable(order: Mapping[str, Any]) -> None:
    if order["status"] not in (PENDING, APPROVED):
        raise FailedPrecondition(
            f"order {order['_id']} is {order['status']} and can no longer be cancelled"
        )
