"""The order saga keeps its promises when processes die or stay away, and under contention.

The tests that stop or kill a service start a system of their own (on their own vhost of the
session broker); the contention test only sends traffic, so it uses the shared system.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aio_pika
import pytest
from order.v1 import order_service_pb2 as order_pb

from harness.shop import Shop, eventually
from harness.system import System

APPROVED = order_pb.ORDER_STATUS_APPROVED
REJECTED = order_pb.ORDER_STATUS_REJECTED


async def waiting(system: System, queue: str, count: int) -> bool:
    """Whether `queue` holds at least `count` messages."""
    connection = await aio_pika.connect(system.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return (declared.declaration_result.message_count or 0) >= count


@pytest.fixture
def own_system(rabbitmq, tmp_path, request):
    systems: list[System] = []

    def start(postgres=None, **env: str) -> System:
        vhost = f"{request.node.name[:40]}-{len(systems)}"
        system = System(
            tmp_path / vhost, amqp_url=rabbitmq.add_vhost(vhost), env=env, postgres=postgres
        )
        systems.append(system)
        system.start()
        return system

    yield start
    for system in systems:
        system.stop()


async def test_sagas_interrupted_by_a_killed_order_service_complete_after_its_restart(own_system):
    system = own_system()
    shop = Shop(system)
    try:
        product = await shop.product(stock=100)
        users = [await shop.register() for _ in range(3)]
        warm = await shop.place(users[0], [(product.product_id, 1)])
        assert (await shop.settled(users[0], warm.order_id)).status == APPROVED
        # With the user service away, every saga waits at its second step (stock reserved,
        # credit asked for), its command in the broker.
        system.processes["user"].stop()
        placed = [(u, await shop.place(u, [(product.product_id, 1)])) for u in users * 5]
        await eventually(lambda: _is(shop.available(product.product_id), 84), what="stock reserved")
        # Every ReserveCredit published: killed earlier, the order service may hold some in
        # its outbox (committed with the stock's reply acked), and no reply could come for them
        # until it is back.
        await eventually(lambda: waiting(system, "user.commands", 15), what="15 commands")
        system.processes["order"].kill()
        system.processes["user"].start()
        # The user service answers while the order service is dead: replies wait in its queue.
        await eventually(lambda: waiting(system, "order.saga-replies", 15), what="15 replies")
        system.processes["order"].start()

        settled = [await shop.settled(u, order.order_id) for u, order in placed]

        assert [o.status for o in settled] == [APPROVED] * 15
        assert await shop.available(product.product_id) == 84
        assert await shop.credit_available(users[1]) == 100_000 - 5 * 1000
        entries = await shop.history(users[0], placed[0][1].order_id)
        kinds = [order_pb.HistoryEntryKind.Name(e.kind) for e in entries]
        assert kinds == [
            "HISTORY_ENTRY_KIND_SAGA_STARTED",
            "HISTORY_ENTRY_KIND_COMMAND_SENT",
            "HISTORY_ENTRY_KIND_REPLY_RECEIVED",
            "HISTORY_ENTRY_KIND_COMMAND_SENT",
            "HISTORY_ENTRY_KIND_REPLY_RECEIVED",
            "HISTORY_ENTRY_KIND_SAGA_ENDED",
        ]
    finally:
        await shop.close()


async def test_on_postgres_the_sagas_of_a_killed_instance_are_completed_by_the_other(
    postgres_factory, own_system
):  # PostgreSQL first: torn down after the services (it waited 30 s for their connections)
    """Two order instances on one PostgreSQL store, as on two machines: the sagas one of them
    started complete on the other after it is killed for good."""
    system = own_system(postgres_factory())
    other = system.add_instance("order", "order-2")
    shop, survivor = Shop(system), Shop(system)
    survivor.use_order_instance(other.address)
    try:
        product = await shop.product(stock=100)
        users = [await shop.register() for _ in range(3)]
        warm = await shop.place(users[0], [(product.product_id, 1)])  # both know the keys
        assert (await survivor.settled(users[0], warm.order_id)).status == APPROVED
        system.processes["user"].stop()  # every saga waits at its second step
        placed = [(u, await shop.place(u, [(product.product_id, 1)])) for u in users * 4]
        await eventually(lambda: _is(shop.available(product.product_id), 87), what="stock reserved")
        system.processes["order"].kill()  # the instance that took the orders, for good
        system.processes["user"].start()

        settled = [await survivor.settled(u, order.order_id, timeout_s=60) for u, order in placed]

        assert [o.status for o in settled] == [APPROVED] * 12
        assert await shop.available(product.product_id) == 87
        assert await shop.credit_available(users[1]) == 100_000 - 4 * 1000
    finally:
        await shop.close()
        await survivor.close()


async def _is(awaitable, expected):
    return (await awaitable) == expected


async def test_a_step_without_reply_times_out_and_its_compensations_apply_later(own_system):
    system = own_system(SAGA_STEP_TIMEOUT_S="2")
    shop = Shop(system)
    try:
        product = await shop.product(price_minor=500, stock=5)
        ada = await shop.register()
        warm = await shop.settled(ada, (await shop.place(ada, [(product.product_id, 1)])).order_id)
        assert warm.status == APPROVED  # the order service now holds the user service's keys
        system.processes["user"].stop()

        placed = await shop.place(ada, [(product.product_id, 2)])
        order = await shop.settled(ada, placed.order_id, timeout_s=15)

        assert order.status == REJECTED
        assert order.status_reason == "reserve_credit got no reply within 2 s"
        system.processes["user"].start()
        await eventually(lambda: _is(shop.available(product.product_id), 4), what="stock back")
        await eventually(lambda: _is(shop.credit_available(ada), 100_000 - 500), what="credit back")

        async def compensated():
            entries = await shop.history(ada, placed.order_id)
            return entries[-1].saga_state == "COMPENSATED" and entries

        entries = await eventually(compensated, what="saga compensated")
        kinds = {order_pb.HistoryEntryKind.Name(e.kind) for e in entries}
        assert "HISTORY_ENTRY_KIND_STEP_TIMED_OUT" in kinds
        assert "HISTORY_ENTRY_KIND_COMPENSATION_SENT" in kinds
    finally:
        await shop.close()


async def test_200_concurrent_orders_on_scarce_stock_never_oversell(shop):
    product = await shop.product(price_minor=100, stock=50)
    users = await asyncio.gather(*(shop.register() for _ in range(20)))

    placed = await asyncio.gather(
        *(shop.place(user, [(product.product_id, 1)]) for user in users for _ in range(10))
    )
    owners = [user for user in users for _ in range(10)]
    settled = await asyncio.gather(
        *(
            shop.settled(user, order.order_id, timeout_s=60)
            for user, order in zip(owners, placed, strict=True)
        )
    )

    outcomes = Counter(order_pb.OrderStatus.Name(o.status) for o in settled)
    assert outcomes == {"ORDER_STATUS_APPROVED": 50, "ORDER_STATUS_REJECTED": 150}
    assert await shop.available(product.product_id) == 0
    assert all("out of stock" in o.status_reason for o in settled if o.status == REJECTED)
    spent = Counter(o.user_id for o in settled if o.status == APPROVED)
    for user in users:
        assert await shop.credit_available(user) == 100_000 - 100 * spent[user.user_id]
