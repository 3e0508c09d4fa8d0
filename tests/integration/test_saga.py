"""The saga engine (ordermesh.saga) over a real SQLite store, its participants played by the test:
commands are read from the outbox, replies handed to the saga as its consumer would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from common.v1 import money_pb2
from inventory.v1 import commands_pb2 as inventory_commands
from inventory.v1 import events_pb2 as inventory_events
from ordermesh.events import Envelope
from ordermesh.saga import SAGAS, Saga, SagaDefinition, SagaStatus, Step
from ordermesh.store import StoreClock
from ordermesh.store.sqlite import SqliteStore
from user.v1 import commands_pb2 as user_commands
from user.v1 import events_pb2 as user_events

from tests.clock import Clock
from tests.integration.flow import wait_until

ORDER = "o-1"


class Outcomes:
    def __init__(self) -> None:
        self.completed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    async def on_completed(self, tx, data) -> None:
        self.completed.append(data["order_id"])

    async def on_failed(self, tx, data, reason) -> None:
        self.failed.append((data["order_id"], reason))


def definition(outcomes: Outcomes) -> SagaDefinition:
    return SagaDefinition(
        name="test",
        saga_id_of=lambda reply: reply.order_id,
        on_completed=outcomes.on_completed,
        on_failed=outcomes.on_failed,
        steps=[
            Step(
                name="reserve_stock",
                action=lambda d: inventory_commands.ReserveStock(order_id=d["order_id"]),
                succeeded=inventory_events.StockReserved,
                failed=inventory_events.StockReservationFailed,
                reason=lambda r: r.reason,
                compensation=lambda d: inventory_commands.ReleaseStock(order_id=d["order_id"]),
                compensated=inventory_events.StockReleased,
                timeout_s=10,
            ),
            Step(
                name="reserve_credit",
                action=lambda d: user_commands.ReserveCredit(
                    order_id=d["order_id"], amount=money_pb2.Money(amount_minor=5)
                ),
                succeeded=user_events.CreditReserved,
                failed=user_events.CreditLimitExceeded,
                compensation=lambda d: user_commands.ReleaseCredit(order_id=d["order_id"]),
                compensated=user_events.CreditReleased,
                timeout_s=10,
            ),
        ],
    )


@pytest.fixture
async def store(tmp_path):
    adapter = SqliteStore(tmp_path / "owner.db")
    await adapter.open([SAGAS])
    yield adapter
    await adapter.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def outcomes():
    return Outcomes()


@pytest.fixture
def saga(clock, outcomes):
    return Saga(definition(outcomes), clock=clock)


def envelope(message) -> Envelope:
    return Envelope(
        event_id="e",
        type=message.DESCRIPTOR.full_name,
        occurred_at=datetime.now(UTC),
        correlation_id="c",
        causation_id="",
        producer="test",
        traceparent="",
    )


async def reply(store, saga, message) -> None:
    async with store.transaction() as tx:
        await saga.handle_reply(message, envelope(message), tx)


async def sent(store) -> list[str]:
    """The commands in the outbox since the last call, by type, and marks them sent."""
    rows = await store.pending(100)
    await store.mark_sent([r.seq for r in rows])
    return [r.message.envelope.type.split(".")[-1] for r in rows]


async def state(store) -> dict:
    async with store.transaction() as tx:
        return await tx.get(SAGAS.name, ORDER)


async def start(store, saga) -> None:
    async with store.transaction() as tx:
        await saga.start(tx, ORDER, {"order_id": ORDER})


async def test_every_step_succeeding_completes_the_saga(store, saga, outcomes):
    await start(store, saga)
    assert await sent(store) == ["ReserveStock"]

    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    assert await sent(store) == ["ReserveCredit"]
    await reply(store, saga, user_events.CreditReserved(order_id=ORDER))

    assert outcomes.completed == [ORDER]
    assert (await state(store))["status"] == SagaStatus.COMPLETED
    assert await sent(store) == []
    kinds = [e["kind"] for e in (await state(store))["history"]]
    assert kinds == [
        "SAGA_STARTED",
        "COMMAND_SENT",
        "REPLY_RECEIVED",
        "COMMAND_SENT",
        "REPLY_RECEIVED",
        "SAGA_ENDED",
    ]


async def test_a_failed_step_compensates_the_completed_ones_in_reverse(store, saga, outcomes):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await sent(store)

    await reply(store, saga, user_events.CreditLimitExceeded(order_id=ORDER))

    assert outcomes.failed == [(ORDER, "CreditLimitExceeded")]
    assert await sent(store) == ["ReleaseStock"]  # the failed step applied nothing
    await reply(store, saga, inventory_events.StockReleased(order_id=ORDER))
    assert (await state(store))["status"] == SagaStatus.COMPENSATED
    assert not (await state(store))["active"]


async def test_a_duplicate_or_late_reply_changes_nothing(store, saga, outcomes):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await sent(store)

    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await reply(store, saga, inventory_events.StockReleased(order_id=ORDER))

    assert await sent(store) == []
    assert (await state(store))["step"] == 1
    assert (await state(store))["history"][-1]["detail"].endswith("ignored")
    assert outcomes.failed == outcomes.completed == []


async def test_a_step_without_reply_times_out_and_is_compensated_with_the_earlier_ones(
    store, saga, outcomes, clock
):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await sent(store)

    clock.now += 9
    assert await saga.expire_overdue(store) == 0
    clock.now += 2
    assert await saga.expire_overdue(store) == 1

    assert outcomes.failed == [(ORDER, "reserve_credit got no reply within 10 s")]
    # The credit may still be reserved late: it is released first, then the stock.
    assert await sent(store) == ["ReleaseCredit"]
    await reply(store, saga, user_events.CreditReleased(order_id=ORDER))
    assert await sent(store) == ["ReleaseStock"]


async def test_a_compensation_without_reply_is_sent_again(store, saga, clock):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReservationFailed(order_id=ORDER, reason="x"))
    assert await sent(store) == ["ReserveStock"]  # nothing to compensate before step 1
    assert (await state(store))["status"] == SagaStatus.COMPENSATED

    other = "o-2"
    async with store.transaction() as tx:
        await saga.start(tx, other, {"order_id": other})
    await reply(store, saga, inventory_events.StockReserved(order_id=other))
    await reply(store, saga, user_events.CreditLimitExceeded(order_id=other))
    assert await sent(store) == ["ReserveStock", "ReserveCredit", "ReleaseStock"]

    clock.now += 11
    await saga.expire_overdue(store)

    assert await sent(store) == ["ReleaseStock"]


async def test_aborting_a_running_saga_undoes_the_step_in_flight_too(store, saga):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await sent(store)

    async with store.transaction() as tx:
        assert await saga.abort(tx, ORDER, "cancelled by its owner")

    assert await sent(store) == ["ReleaseCredit"]
    await reply(store, saga, user_events.CreditReserved(order_id=ORDER))  # late: ignored
    await reply(store, saga, user_events.CreditReleased(order_id=ORDER))
    await reply(store, saga, inventory_events.StockReleased(order_id=ORDER))
    assert await sent(store) == ["ReleaseStock"]
    assert (await state(store))["status"] == SagaStatus.COMPENSATED


async def test_a_saga_resumes_from_its_stored_state_in_a_new_engine(store, outcomes, clock):
    await start(store, Saga(definition(outcomes), clock=clock))
    await sent(store)

    restarted = Saga(definition(outcomes), clock=clock)  # as after a crash of the owner
    await reply(store, restarted, inventory_events.StockReserved(order_id=ORDER))
    await reply(store, restarted, user_events.CreditReserved(order_id=ORDER))

    assert outcomes.completed == [ORDER]


async def test_cancelling_a_completed_saga_compensates_every_step_under_timeouts(
    store, saga, clock
):
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await reply(store, saga, user_events.CreditReserved(order_id=ORDER))
    await sent(store)

    async with store.transaction() as tx:
        assert await saga.abort(tx, ORDER, "cancelled by its owner")

    assert await sent(store) == ["ReleaseCredit"]
    clock.now += 11
    assert await saga.expire_overdue(store) == 1  # the compensation is watched, and resent
    assert await sent(store) == ["ReleaseCredit"]


async def test_a_compensation_that_never_gets_a_reply_parks_the_saga_for_an_operator(
    store, outcomes, clock
):
    """Compensations were sent again every timeout forever, the history growing with them."""
    saga = Saga(definition(outcomes), clock=clock, max_compensation_sends=3)
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await reply(store, saga, user_events.CreditLimitExceeded(order_id=ORDER))
    assert await sent(store) == ["ReserveStock", "ReserveCredit", "ReleaseStock"]

    for _ in range(5):
        clock.now += 11
        await saga.expire_overdue(store)

    assert await sent(store) == ["ReleaseStock", "ReleaseStock"]  # 3 sends in all, no more
    parked = await state(store)
    assert parked["status"] == SagaStatus.NEEDS_OPERATOR
    assert not parked["active"]
    assert parked["history"][-1]["kind"] == "SAGA_PARKED"
    assert "got no reply to 3 sends" in parked["history"][-1]["detail"]
    assert await saga.count_needing_operator(store) == 1

    await reply(store, saga, inventory_events.StockReleased(order_id=ORDER))  # late, after all

    assert (await state(store))["status"] == SagaStatus.COMPENSATED
    assert await saga.count_needing_operator(store) == 0


async def test_the_upkeep_notes_how_many_sagas_need_an_operator_for_make_status(
    store, outcomes, clock
):
    saga = Saga(definition(outcomes), clock=clock, max_compensation_sends=1)
    await start(store, saga)
    await reply(store, saga, inventory_events.StockReserved(order_id=ORDER))
    await reply(store, saga, user_events.CreditLimitExceeded(order_id=ORDER))
    clock.now += 11
    await saga.expire_overdue(store)  # the one send of ReleaseStock got no reply: parked
    notes: dict[str, str] = {"breaker.inventory": "closed"}

    upkeep = asyncio.create_task(saga.maintain(store, notes=notes, retention_s=3600))
    try:
        await wait_until(lambda: "sagas_needing_operator" in notes, 5, "the upkeep's count")
    finally:
        upkeep.cancel()

    assert notes == {"breaker.inventory": "closed", "sagas_needing_operator": "1"}
    with pytest.raises(asyncio.CancelledError):
        await upkeep


async def test_compensated_sagas_are_pruned_after_retention_and_completed_ones_kept(
    store, saga, clock
):
    for order_id, replies in (
        ("o-rejected", [inventory_events.StockReservationFailed(order_id="o-rejected")]),
        ("o-approved", [inventory_events.StockReserved(order_id="o-approved"),
                        user_events.CreditReserved(order_id="o-approved")]),
    ):  # fmt: skip
        async with store.transaction() as tx:
            await saga.start(tx, order_id, {"order_id": order_id})
        for message in replies:
            await reply(store, saga, message)

    assert await saga.prune_ended(store, before=clock.now - 1) == 0  # not past retention yet
    clock.now += 100

    assert await saga.prune_ended(store, before=clock.now - 50) == 1
    async with store.transaction() as tx:
        assert await tx.get(SAGAS.name, "o-rejected") is None
        assert (await tx.get(SAGAS.name, "o-approved"))["status"] == SagaStatus.COMPLETED


async def test_step_deadlines_are_set_and_compared_on_the_stores_clock(store, outcomes, clock):
    """Instances on hosts whose clocks disagree: one 15 s slow starts the saga (its first step
    times out after 10 s), one 20 s fast scans for overdue steps. On their own clocks the step
    would be overdue at once (the slow one sets its deadline 5 s in the past of the fast one);
    on the store's, which each measures, it is not, and it is once the store's clock passes the
    deadline. (The store's clock is the test's `clock`, as a database server's would be.)"""

    async def store_now() -> float:
        return clock()

    store.now = store_now
    slow = StoreClock(store, local=lambda: clock() - 15)
    fast = StoreClock(store, local=lambda: clock() + 20)
    await asyncio.gather(slow.sync(), fast.sync())
    assert (slow(), fast()) == (clock(), clock())

    await start(store, Saga(definition(outcomes), clock=slow))
    scanner = Saga(definition(outcomes), clock=fast)
    assert await scanner.expire_overdue(store) == 0
    assert (await state(store))["status"] == SagaStatus.RUNNING

    clock.now += 9
    assert await scanner.expire_overdue(store) == 0
    clock.now += 2
    assert await scanner.expire_overdue(store) == 1
