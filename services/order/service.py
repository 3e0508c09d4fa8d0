"""The order service's use cases, and the order saga: reserve stock, reserve credit, approve."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from common.v1 import address_pb2, money_pb2
from inventory.v1 import events_pb2 as inventory_events
from order.v1 import events_pb2
from order.v1 import order_service_pb2 as pb
from order.v2 import events_pb2 as events_v2
from order.v2 import order_service_pb2 as pb_v2
from user.v1 import events_pb2 as user_events

from chassis import pages
from chassis.errors import NotFound
from chassis.events import Message, outgoing
from chassis.metrics import SagaMetrics
from chassis.saga import Saga, SagaDefinition, Step
from chassis.store import DuplicateKey, Store, Transaction, run_transaction
from chassis.timestamps import timestamp
from services.order import clients, domain
from services.order.store import ORDERS

PRODUCER = "order"


def lines_proto(order: Mapping[str, Any]) -> list[pb.OrderLine]:
    return [
        pb.OrderLine(
            product_id=line["product_id"],
            product_name=line["product_name"],
            quantity=line["quantity"],
            unit_price=money_pb2.Money(
                amount_minor=line["unit_price_minor"], currency_code=order["currency"]
            ),
        )
        for line in order["lines"]
    ]


def items_proto(order: Mapping[str, Any]) -> list[pb_v2.Item]:
    """The order's lines as order.v2 has them: each with its line total."""
    currency = order["currency"]
    return [
        pb_v2.Item(
            product_id=line["product_id"],
            product_name=line["product_name"],
            quantity=line["quantity"],
            unit_price=money_pb2.Money(
                amount_minor=line["unit_price_minor"], currency_code=currency
            ),
            line_total=money_pb2.Money(
                amount_minor=domain.line_total_minor(line), currency_code=currency
            ),
        )
        for line in order["lines"]
    ]


def total_proto(order: Mapping[str, Any]) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=order["total_minor"], currency_code=order["currency"])


def address_proto(order: Mapping[str, Any]) -> address_pb2.PostalAddress | None:
    """The order's delivery address; None for one placed through order.v1 (or before v2)."""
    address = order.get("delivery_address")
    return None if address is None else address_pb2.PostalAddress(**address)


def _credit_refused(reply: Message) -> str:
    assert isinstance(reply, user_events.CreditLimitExceeded)
    return (
        f"credit limit exceeded: {reply.requested.amount_minor} requested, "
        f"{reply.credit_available.amount_minor} available ({reply.requested.currency_code})"
    )


def _stock_refused(reply: Message) -> str:
    assert isinstance(reply, inventory_events.StockReservationFailed)
    return f"out of stock: {reply.reason}"


def order_saga(
    *,
    on_completed: Callable[[Transaction, Mapping[str, Any]], Awaitable[None]],
    on_failed: Callable[[Transaction, Mapping[str, Any], str], Awaitable[None]],
    step_timeout_s: float,
) -> SagaDefinition:
    return SagaDefinition(
        name="place_order",
        producer=PRODUCER,
        saga_id_of=lambda reply: str(reply.order_id),  # type: ignore[attr-defined]
        on_completed=on_completed,
        on_failed=on_failed,
        steps=[
            Step(
                name="reserve_stock",
                state="RESERVING_STOCK",
                action=clients.reserve_stock,
                succeeded=inventory_events.StockReserved,
                failed=inventory_events.StockReservationFailed,
                reason=_stock_refused,
                compensation=clients.release_stock,
                compensated=inventory_events.StockReleased,
                timeout_s=step_timeout_s,
            ),
            Step(
                name="reserve_credit",
                state="RESERVING_CREDIT",
                action=clients.reserve_credit,
                succeeded=user_events.CreditReserved,
                failed=user_events.CreditLimitExceeded,
                reason=_credit_refused,
                compensation=clients.release_credit,
                compensated=user_events.CreditReleased,
                timeout_s=step_timeout_s,
            ),
        ],
    )


class Orders:
    def __init__(
        self,
        store: Store,
        *,
        inventory: clients.InventoryClient,
        step_timeout_s: float = 30.0,
        compensation_sends: int = 10,
        clock: Callable[[], float] = time.time,
        saga_metrics: SagaMetrics | None = None,
    ):
        self._store = store
        self._inventory = inventory
        self._clock = clock
        self.saga = Saga(
            order_saga(
                on_completed=self._approve,
                on_failed=self._reject,
                step_timeout_s=step_timeout_s,
            ),
            clock=clock,
            max_compensation_sends=compensation_sends,
            metrics=saga_metrics,
        )

    async def place_order(
        self,
        user_id: str,
        *,
        idempotency_key: str,
        items: Sequence[domain.Item],
        delivery_address: domain.Address | None = None,
    ) -> dict[str, Any]:
        """A PENDING order whose saga has started; the same order again for a repeated key.
        `delivery_address`: required by order.v2, which checks it; order.v1 has none."""
        idempotency = f"{user_id}/{domain.check_idempotency_key(idempotency_key)}"
        merged = domain.merged_items(items)
        products = await asyncio.gather(*(self._inventory.product(i.product_id) for i in merged))
        lines, total, currency = domain.priced_lines(
            merged, {item.product_id: p for item, p in zip(merged, products, strict=True)}
        )
        now = self._clock()
        order_id = str(uuid.uuid4())
        order = {
            "user_id": user_id,
            "idempotency": idempotency,
            "status": domain.PENDING,
            "status_reason": "",
            "lines": lines,
            "total_minor": total,
            "currency": currency,
            "delivery_address": delivery_address and delivery_address.as_document(),
            "create_time": now,
            "update_time": now,
        }

        async def place(tx: Transaction) -> dict[str, Any]:
            stored = await tx.insert(ORDERS.name, order_id, order)
            event = events_pb2.OrderPlaced(
                order_id=order_id,
                user_id=user_id,
                lines=lines_proto(order),
                total=total_proto(order),
                place_time=timestamp(now),
                delivery_address=address_proto(order),
            )
            tx.publish(outgoing(event, producer=PRODUCER), key=order_id)
            await self.saga.start(
                tx,
                order_id,
                {
                    "order_id": order_id,
                    "user_id": user_id,
                    "lines": lines,
                    "total_minor": total,
                    "currency": currency,
                },
            )
            return stored

        try:
            # Run again if it met another transaction (PostgreSQL's outbox lock, under load).
            stored = await run_transaction(self._store, place)
        except DuplicateKey:
            # A retry with the same key (the unique index decides, once): the first order wins.
            if (placed := await self._by_idempotency(idempotency)) is not None:
                return placed
            raise
        return stored

    async def order(self, user_id: str, order_id: str) -> dict[str, Any]:
        async with self._store.transaction() as tx:
            return await self._own(tx, user_id, order_id)

    async def list_orders(
        self, user_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        return await pages.read_page(
            self._store,
            ORDERS.name,
            where={"user_id": user_id},
            order_by="create_time",
            descending=True,
            page_size=page_size,
            page_token=page_token,
        )

    async def cancel_order(self, user_id: str, order_id: str, *, reason: str) -> dict[str, Any]:
        """Cancels a PENDING or APPROVED order; its saga releases what was reserved."""

        async def cancel(tx: Transaction) -> dict[str, Any]:
            order = await self._own(tx, user_id, order_id)
            domain.check_cancellable(order)
            now = self._clock()
            order = await tx.update(
                ORDERS.name,
                {**order, "status": domain.CANCELLED, "status_reason": reason, "update_time": now},
            )
            await self.saga.abort(tx, order_id, reason or "cancelled by its owner")
            event = events_pb2.OrderCancelled(
                order_id=order_id, user_id=user_id, reason=reason, cancel_time=timestamp(now)
            )
            tx.publish(outgoing(event, producer=PRODUCER), key=order_id)
            return order

        return await run_transaction(self._store, cancel)

    async def history(self, user_id: str, order_id: str) -> list[Mapping[str, Any]]:
        async with self._store.transaction() as tx:
            await self._own(tx, user_id, order_id)
            return await self.saga.history(tx, order_id)

    # -- the saga's outcomes ---------------------------------------------------------------

    async def _approve(self, tx: Transaction, data: Mapping[str, Any]) -> None:
        order = await tx.get(ORDERS.name, data["order_id"])
        if order is None or order["status"] != domain.PENDING:
            return
        now = self._clock()
        await tx.update(ORDERS.name, {**order, "status": domain.APPROVED, "update_time": now})
        # Both versions until order.v1.OrderApproved's sunset (docs/versioning.md), in the
        # same transaction: a consumer bound to either gets every approval.
        approved = events_v2.OrderApproved(
            order_id=order["_id"],
            user_id=order["user_id"],
            items=items_proto(order),
            total=total_proto(order),
            delivery_address=address_proto(order),
            approve_time=timestamp(now),
        )
        approved_v1 = events_pb2.OrderApproved(
            order_id=order["_id"],
            user_id=order["user_id"],
            lines=lines_proto(order),
            total=total_proto(order),
            approve_time=timestamp(now),
        )
        for event in (approved, approved_v1):
            tx.publish(outgoing(event, producer=PRODUCER), key=order["_id"])

    async def _reject(self, tx: Transaction, data: Mapping[str, Any], reason: str) -> None:
        order = await tx.get(ORDERS.name, data["order_id"])
        if order is None or order["status"] != domain.PENDING:
            return  # cancelled meanwhile: the cancellation already undoes the saga
        now = self._clock()
        await tx.update(
            ORDERS.name,
            {**order, "status": domain.REJECTED, "status_reason": reason, "update_time": now},
        )
        event = events_pb2.OrderRejected(
            order_id=order["_id"],
            user_id=order["user_id"],
            reason=reason,
            reject_time=timestamp(now),
        )
        tx.publish(outgoing(event, producer=PRODUCER), key=order["_id"])

    async def _by_idempotency(self, idempotency: str) -> dict[str, Any] | None:
        async with self._store.transaction() as tx:
            found = await tx.find(ORDERS.name, where={"idempotency": idempotency}, limit=1)
        return found[0] if found else None

    @staticmethod
    async def _own(tx: Transaction, user_id: str, order_id: str) -> dict[str, Any]:
        """The caller's order; another user's order is as not found as a missing one."""
        order = await tx.get(ORDERS.name, order_id) if order_id else None
        if order is None or order["user_id"] != user_id:
            raise NotFound(f"order {order_id!r} not found")
        return order
