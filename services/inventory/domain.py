"""Products and stock: the inventory service's rules, no I/O.

Stock is counted as `on_hand` (units in the warehouse) and `reserved` (held by orders whose
saga is running or approved); `available = on_hand - reserved` never goes below zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ordermesh.errors import FailedPrecondition, InvalidArgument

SKU = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
NAME_MAX, DESCRIPTION_MAX = 200, 2000
MAX_LINE_QUANTITY = 1_000_000


def available(product: Mapping[str, Any]) -> int:
    return int(product["on_hand"]) - int(product["reserved"])


def new_product(
    *, sku: str, name: str, description: str, price_minor: int, currency: str, initial_stock: int
) -> dict[str, Any]:
    """A product's stored fields, validated; every message names the bad value."""
    sku = sku.strip().upper()
    if not SKU.match(sku):
        raise InvalidArgument(f"sku {sku!r} must be 1-64 letters, digits or dashes")
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidArgument(f"name must have 1 to {NAME_MAX} characters")
    if len(description) > DESCRIPTION_MAX:
        raise InvalidArgument(f"description must have at most {DESCRIPTION_MAX} characters")
    if price_minor < 0:
        raise InvalidArgument(f"price {price_minor} is negative")
    if not CURRENCY.match(currency):
        raise InvalidArgument(f"currency {currency!r} is not an ISO 4217 code")
    if initial_stock < 0:
        raise InvalidArgument(f"initial stock {initial_stock} is negative")
    return {
        "sku": sku,
        "name": name,
        "description": description,
        "price_minor": price_minor,
        "currency": currency,
        "on_hand": initial_stock,
        "reserved": 0,
    }


def adjusted(product: Mapping[str, Any], delta: int) -> dict[str, Any]:
    """The product after a delivery (delta > 0) or a write-off (delta < 0)."""
    if delta == 0:
        raise InvalidArgument("delta must not be zero")
    if available(product) + delta < 0:
        raise FailedPrecondition(
            f"product {product['_id']}: removing {-delta} would leave available stock "
            f"at {available(product) + delta}"
        )
    return {**product, "on_hand": int(product["on_hand"]) + delta}


@dataclass(frozen=True)
class Shortage:
    product_id: str
    requested: int
    available: int


def shortages(
    lines: Sequence[tuple[str, int]], products: Mapping[str, Mapping[str, Any] | None]
) -> list[Shortage]:
    """Why an order's lines cannot all be reserved; empty if they can (all or nothing)."""
    wanted: dict[str, int] = {}
    for product_id, quantity in lines:
        wanted[product_id] = wanted.get(product_id, 0) + quantity
    found = []
    for product_id, quantity in wanted.items():
        product = products.get(product_id)
        left = available(product) if product is not None else 0
        if quantity <= 0 or quantity > left:
            found.append(Shortage(product_id, quantity, left))
    return found


def describe(found: Sequence[Shortage]) -> str:
    return "; ".join(
        f"product {s.product_id}: {s.requested} requested, {s.available} available" for s in found
    )
