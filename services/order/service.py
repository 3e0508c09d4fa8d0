"""The order service's use cases, and the order saga: reserve stock, reserve credit, approve.

The use cases speak the domain's terms and the stored order; what each version of the
contract says of an order's change (its events) is built by that version's face
(`OrderEvents`: services.order.api, services.order.api_v2) and published here, in the
transaction that makes the change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from inventory.v1 import events_pb2 as inventory_events
from ordermesh import pages
from ordermesh.errors import NotFound
from ordermesh.events import Message, outgoing
from ordermesh.metrics import SagaMetrics
from ordermesh.saga import Saga, SagaDefinition, Step
from ordermesh.store import DuplicateKey, Store, Transaction, run_transaction
from user.v1 import events_pb2 as user_events

from services.order import clients, domain
from services.order.store import ORDERS

PRODUCER = "order"


class OrderEvents(Protocol):
    """What one version of the order contract says of an order's changes: its event for each,
    built from the order as stored after the change; None where the version has none."""

    def placed(self, order: Mapping[str, Any]) -> Message | None: ...

    def approved(self, order: Mapping[str, Any]) -> Message | None: ...

    def rejected(self, order: Mapping[str, Any]) -> Message | None: ...

    def cancelled(self, order: Mapping[str, Any]) -> Message | None: ...


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
        events: Sequence[OrderEvents],
        step_timeout_s: float = 30.0,
        compensation_sends: int = 10,
        clock: Callable[[], float] = time.time,
        saga_metrics: SagaMetrics | None = None,
    ):
        self._store = store
        self._inventory = inventory
        self._events = events
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
            self._publish(tx, stored, [version.placed(stored) for version in self._events])
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
            self._publish(tx, order, [version.cancelled(order) for version in self._events])
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
        approved = await tx.update(
            ORDERS.name, {**order, "status": domain.APPROVED, "update_time": now}
        )
        # Every version's (order.v1's until its sunset, docs/versioning.md), in the same
        # transaction: a consumer bound to either gets every approval.
        self._publish(tx, approved, [version.approved(approved) for version in self._events])

    async def _reject(self, tx: Transaction, data: Mapping[str, Any], reason: str) -> None:
        order = await tx.get(ORDERS.name, data["order_id"])
        if order is None or order["status"] != domain.PENDING:
            return  # cancelled meanwhile: the cancellation already undoes the saga
        now = self._clock()
        rejected = await tx.update(
            ORDERS.name,
            {**order, "status": domain.REJECTED, "status_reason": reason, "update_time": now},
        )
        self._publish(tx, rejected, [version.rejected(rejected) for version in self._events])

    @staticmethod
    def _publish(
        tx: Transaction, order: Mapping[str, Any], events: Sequence[Message | None]
    ) -> None:
        """Publishes the events of an order's change with the commit, keyed by the order (so
        they keep their order), skipping a version that has none."""
        for event in events:
            if event is not None:
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
