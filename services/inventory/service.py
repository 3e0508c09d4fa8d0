"""The inventory service's use cases: the catalogue, stock adjustments, and reservations."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common.v1 import money_pb2
from inventory.v1 import commands_pb2, events_pb2
from inventory.v1 import inventory_service_pb2 as pb
from ordermesh import pages
from ordermesh.errors import AlreadyExists, NotFound
from ordermesh.events import outgoing
from ordermesh.store import DuplicateKey, Store, Transaction, run_transaction
from ordermesh.timestamps import timestamp

from services.inventory import domain
from services.inventory.store import PRODUCTS, REQUESTS, RESERVATIONS

PRODUCER = "inventory"


def product_proto(product: Mapping[str, Any]) -> pb.Product:
    return pb.Product(
        product_id=product["_id"],
        sku=product["sku"],
        name=product["name"],
        description=product["description"],
        price=money_pb2.Money(
            amount_minor=product["price_minor"], currency_code=product["currency"]
        ),
        available_stock=domain.available(product),
        create_time=timestamp(product["create_time"]),
        update_time=timestamp(product["update_time"]),
    )


class Inventory:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock

    async def create_product(
        self,
        *,
        sku: str,
        name: str,
        description: str,
        price_minor: int,
        currency: str,
        initial_stock: int,
        request_id: str,
    ) -> dict[str, Any]:
        fields = domain.new_product(
            sku=sku,
            name=name,
            description=description,
            price_minor=price_minor,
            currency=currency,
            initial_stock=initial_stock,
        )

        async def create(tx: Transaction) -> dict[str, Any]:
            if request_id and (done := await tx.get(REQUESTS.name, request_id)) is not None:
                return await self._product(tx, done["product_id"])
            now = self._clock()
            product_id = str(uuid.uuid4())
            product = await tx.insert(
                PRODUCTS.name, product_id, {**fields, "create_time": now, "update_time": now}
            )
            if request_id:
                await tx.insert(REQUESTS.name, request_id, {"product_id": product_id})
            event = events_pb2.ProductCreated(product=product_proto(product))
            tx.publish(outgoing(event, producer=PRODUCER), key=product_id)
            return product

        try:
            return await run_transaction(self._store, create)
        except DuplicateKey:
            raise AlreadyExists(f"a product with sku {fields['sku']!r} exists already") from None

    async def adjust_stock(
        self, product_id: str, *, delta: int, reason: str, request_id: str
    ) -> dict[str, Any]:
        async def adjust(tx: Transaction) -> dict[str, Any]:
            if request_id and await tx.get(REQUESTS.name, request_id) is not None:
                return await self._product(tx, product_id)
            product = domain.adjusted(await self._product(tx, product_id), delta)
            product = await tx.update(PRODUCTS.name, {**product, "update_time": self._clock()})
            if request_id:
                await tx.insert(REQUESTS.name, request_id, {"product_id": product_id})
            event = events_pb2.StockAdjusted(
                product_id=product_id,
                delta=delta,
                available_stock=domain.available(product),
                reason=reason,
            )
            tx.publish(outgoing(event, producer=PRODUCER), key=product_id)
            return product

        return await run_transaction(self._store, adjust)

    async def product(self, product_id: str) -> dict[str, Any]:
        async with self._store.transaction() as tx:
            return await self._product(tx, product_id)

    async def products(self, product_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Several products in one transaction, in the order asked; None for a missing one."""
        async with self._store.transaction() as tx:
            return [await tx.get(PRODUCTS.name, i) if i else None for i in product_ids]

    async def list_products(
        self, *, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        return await pages.read_page(
            self._store, PRODUCTS.name, page_size=page_size, page_token=page_token, order_by="sku"
        )

    @staticmethod
    async def _product(tx: Transaction, product_id: str) -> dict[str, Any]:
        product = await tx.get(PRODUCTS.name, product_id) if product_id else None
        if product is None:
            raise NotFound(f"product {product_id!r} does not exist")
        return product

    # -- reservations (saga participant) ---------------------------------------------------

    async def reserve_stock(self, tx: Transaction, command: commands_pb2.ReserveStock) -> None:
        """Holds every line of an order, or none; once per order id. Replies either way."""
        order_id = command.order_id
        reservation = await tx.get(RESERVATIONS.name, order_id)
        if reservation is None:
            lines = [(line.product_id, line.quantity) for line in command.lines]
            products = {pid: await tx.get(PRODUCTS.name, pid) for pid, _ in lines if pid}
            short = domain.shortages(lines, products)
            reason = domain.describe(short) if lines else "the order has no lines"
            if not short and lines:
                now = self._clock()
                for product_id, quantity in lines:
                    product = products[product_id]
                    assert product is not None
                    product = {**product, "reserved": product["reserved"] + quantity}
                    products[product_id] = await tx.update(
                        PRODUCTS.name, {**product, "update_time": now}
                    )
            reservation = await tx.insert(
                RESERVATIONS.name,
                order_id,
                {
                    "lines": [[pid, quantity] for pid, quantity in lines],
                    "status": "RESERVED" if lines and not short else "REFUSED",
                    "reason": reason,
                    "shortages": [[s.product_id, s.requested, s.available] for s in short],
                },
            )
        reply: events_pb2.StockReserved | events_pb2.StockReservationFailed
        if reservation["status"] == "RESERVED":
            reply = events_pb2.StockReserved(order_id=order_id, lines=command.lines)
        else:
            # Refused now, or released before this command arrived (the saga gave up on it).
            reply = events_pb2.StockReservationFailed(
                order_id=order_id,
                reason=reservation["reason"] or "the order was released before it was reserved",
                shortages=[
                    events_pb2.StockShortage(product_id=pid, requested=requested, available=left)
                    for pid, requested, left in reservation.get("shortages", [])
                ],
            )
        tx.publish(outgoing(reply, producer=PRODUCER), key=order_id)

    async def release_stock(self, tx: Transaction, command: commands_pb2.ReleaseStock) -> None:
        """Gives back what an order holds, once; replies StockReleased even if it held nothing."""
        order_id = command.order_id
        reservation = await tx.get(RESERVATIONS.name, order_id)
        released: list[commands_pb2.StockLine] = []
        if reservation is None:
            # Released before reserved: the late ReserveStock must find it released.
            await tx.insert(
                RESERVATIONS.name, order_id, {"lines": [], "status": "RELEASED", "reason": ""}
            )
        elif reservation["status"] == "RESERVED":
            now = self._clock()
            for product_id, quantity in reservation["lines"]:
                product = await tx.get(PRODUCTS.name, product_id)
                if product is not None:
                    reserved = max(0, product["reserved"] - quantity)
                    await tx.update(
                        PRODUCTS.name, {**product, "reserved": reserved, "update_time": now}
                    )
                released.append(commands_pb2.StockLine(product_id=product_id, quantity=quantity))
            await tx.update(RESERVATIONS.name, {**reservation, "status": "RELEASED"})
        reply = events_pb2.StockReleased(order_id=order_id, lines=released)
        tx.publish(outgoing(reply, producer=PRODUCER), key=order_id)
