"""An operator's view of sagas and actions on those parked as needing an operator (ordermesh.saga:
list, get, retry a compensation, resolve), over a real SQLite and a real PostgreSQL store, the
participants played by the test as in test_saga.py; then the same through ops.v1.SagaService
(ordermesh.saga_operations) on a real gRPC server whose callers' tokens are verified for real; then
in the order service of a running system, where the customer's order history shows it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from inventory.v1 import events_pb2 as inventory_events
from jwt.algorithms import OKPAlgorithm
from order.v1 import order_service_pb2 as order_pb
from ordermesh import saga_operations, saga_record
from ordermesh.contracts.ops.v1 import ops_service_pb2 as pb
from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc as pb_grpc
from ordermesh.errors import InvalidArgument, NotFound
from ordermesh.grpc import GrpcServer
from ordermesh.metrics import SagaMetrics
from ordermesh.saga import SAGAS, Saga, SagaStatus
from ordermesh.store.postgres import PostgresStore
from ordermesh.store.sqlite import SqliteStore
from ordermesh.tokens import KeySet, TokenVerifier
from prometheus_client import CollectorRegistry
from user.v1 import events_pb2 as user_events

from harness.shop import Shop, eventually
from harness.system import System
from tests.clock import Clock
from tests.integration.test_saga import Outcomes, definition, reply, sent

ADMIN = "u-admin"
PARKED = SagaStatus.NEEDS_OPERATOR


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        adapter = SqliteStore(tmp_path / "owner.db")
    else:
        adapter = PostgresStore(request.getfixturevalue("postgres_url"))
    await adapter.open([SAGAS])
    yield adapter
    await adapter.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def metrics():
    return SagaMetrics(CollectorRegistry())


@pytest.fixture
def saga(clock, metrics):
    # A compensation is sent twice without a reply, then its saga is parked.
    return Saga(definition(Outcomes()), clock=clock, max_compensation_sends=2, metrics=metrics)


def ended(metrics: SagaMetrics, outcome: str) -> float:
    return metrics.ended.labels("test", outcome)._value.get()


async def start(store, saga, order_id: str) -> None:
    async with store.transaction() as tx:
        await saga.start(tx, order_id, {"order_id": order_id})


async def park(store, saga, clock, order_id: str) -> None:
    """A saga whose credit is refused, and whose stock's release gets no reply to its 2 sends
    (10 s each): parked as needing an operator."""
    await start(store, saga, order_id)
    await reply(store, saga, inventory_events.StockReserved(order_id=order_id))
    await reply(store, saga, user_events.CreditLimitExceeded(order_id=order_id))
    for _ in range(2):
        clock.now += 11
        await saga.expire_overdue(store)
    assert (await saga.get(store, order_id)).status == PARKED


async def document(store, saga_id: str) -> dict:
    async with store.transaction() as tx:
        return await tx.get(SAGAS.name, saga_id)


async def test_sagas_are_listed_by_status_and_age_oldest_update_first_a_page_at_a_time(
    store, saga, clock
):
    await park(store, saga, clock, "o-old")
    clock.now += 600
    await park(store, saga, clock, "o-new")
    clock.now += 1
    await start(store, saga, "o-running")

    parked, token = await saga.list_sagas(store, status=PARKED)
    old_enough, _ = await saga.list_sagas(store, status=PARKED, min_age_s=300)
    every, _ = await saga.list_sagas(store)

    assert ([s.saga_id for s in parked], token) == (["o-old", "o-new"], "")
    assert [s.saga_id for s in old_enough] == ["o-old"]
    assert [s.saga_id for s in every] == ["o-old", "o-new", "o-running"]
    old = parked[0]
    assert (old.state, old.step, old.failure_reason) == (
        "NEEDS_OPERATOR", "reserve_stock", "CreditLimitExceeded"
    )  # fmt: skip
    assert old.history[-1]["kind"] == "SAGA_PARKED"
    assert (every[2].status, every[2].step) == (SagaStatus.RUNNING, "reserve_stock")
    first, token = await saga.list_sagas(store, page_size=2)
    second, last = await saga.list_sagas(store, page_size=2, page_token=token)
    assert [s.saga_id for s in first + second] == ["o-old", "o-new", "o-running"]
    assert token
    assert not last
    with pytest.raises(InvalidArgument, match="page_token"):
        await saga.list_sagas(store, page_token="bm90IG91cnM=")
    with pytest.raises(InvalidArgument, match="min_age_seconds"):
        await saga.list_sagas(store, min_age_s=-1)


async def test_a_retry_sends_the_compensation_again_and_its_reply_ends_the_saga_compensated(
    store, saga, clock
):
    await park(store, saga, clock, "o-1")
    await sent(store)

    retried = await saga.retry_compensation(store, "o-1", actor=ADMIN, reason="inventory is back")

    assert (retried.status, retried.state) == (
        SagaStatus.COMPENSATING, "COMPENSATING_RESERVE_STOCK"
    )  # fmt: skip
    assert await sent(store) == ["ReleaseStock"]
    stored = await document(store, "o-1")
    assert (stored["sends"], stored["deadline"], stored["active"]) == (1, clock.now + 10, True)
    retry, resend = stored["history"][-2:]
    assert (retry["kind"], retry["step"], retry["actor"], retry["detail"]) == (
        "OPERATOR_RETRIED", "reserve_stock", ADMIN, "inventory is back"
    )  # fmt: skip
    assert resend["kind"] == "COMPENSATION_SENT"
    # Once retried, the saga no longer needs an operator: a second retry changes nothing.
    assert await saga.retry_compensation(store, "o-1", actor="u-2", reason="again") == retried
    assert await sent(store) == []

    await reply(store, saga, inventory_events.StockReleased(order_id="o-1"))

    assert (await saga.get(store, "o-1")).status == SagaStatus.COMPENSATED


async def test_a_retried_compensation_without_reply_is_parked_again_after_a_fresh_count_of_sends(
    store, saga, clock
):
    await park(store, saga, clock, "o-1")
    await sent(store)
    await saga.retry_compensation(store, "o-1", actor=ADMIN, reason="try once more")

    clock.now += 11
    await saga.expire_overdue(store)
    assert (await saga.get(store, "o-1")).status == SagaStatus.COMPENSATING  # sent a 2nd time
    clock.now += 11
    await saga.expire_overdue(store)

    assert (await saga.get(store, "o-1")).status == PARKED
    assert await sent(store) == ["ReleaseStock", "ReleaseStock"]


async def test_a_resolve_ends_a_parked_saga_compensated_once_and_a_late_reply_changes_nothing(
    store, saga, clock, metrics
):
    await park(store, saga, clock, "o-1")
    await sent(store)
    clock.now += 5

    resolved = await saga.resolve(store, "o-1", actor=ADMIN, reason="released by hand")

    assert (resolved.status, resolved.step) == (SagaStatus.COMPENSATED, "")
    assert await sent(store) == []
    entries = [(e["kind"], e["step"], e["actor"], e["detail"]) for e in resolved.history[-2:]]
    assert entries == [
        ("OPERATOR_RESOLVED", "reserve_stock", ADMIN, "released by hand"),
        ("SAGA_ENDED", "", "", "CreditLimitExceeded"),
    ]
    # Counted as the engine counts an end: parked once, then compensated.
    assert (ended(metrics, "needs_operator"), ended(metrics, "compensated")) == (1, 1)

    again = await saga.resolve(store, "o-1", actor="u-2", reason="resolved twice")
    await reply(store, saga, inventory_events.StockReleased(order_id="o-1"))  # late, after all

    assert again == resolved
    assert ended(metrics, "compensated") == 1
    late = await saga.get(store, "o-1")
    assert late.status == SagaStatus.COMPENSATED
    assert late.history[:-1] == resolved.history
    assert late.history[-1]["detail"] == "not awaited while COMPENSATED: ignored"
    assert await sent(store) == []
    # Kept for its retention, like any compensated saga, then pruned.
    assert await saga.prune_ended(store, before=clock.now + 1) == 1


async def test_a_resolve_names_the_compensations_it_takes_as_done_besides_the_awaited_one(
    store, saga, clock
):
    await start(store, saga, "o-1")
    await reply(store, saga, inventory_events.StockReserved(order_id="o-1"))
    for _ in range(3):  # the credit's step times out; its release, sent twice, gets no reply
        clock.now += 11
        await saga.expire_overdue(store)
    await sent(store)
    assert (await saga.get(store, "o-1")).step == "reserve_credit"

    resolved = await saga.resolve(store, "o-1", actor=ADMIN, reason="both released by hand")

    assert resolved.status == SagaStatus.COMPENSATED
    assert resolved.history[-2]["detail"] == (
        "both released by hand (the compensations of reserve_stock are taken as done too)"
    )
    assert await sent(store) == []


async def test_actions_on_a_saga_that_does_not_need_an_operator_change_nothing(store, saga):
    await start(store, saga, "o-1")
    await sent(store)
    running = await saga.get(store, "o-1")

    assert await saga.retry_compensation(store, "o-1", actor=ADMIN, reason="r") == running
    assert await saga.resolve(store, "o-1", actor=ADMIN, reason="r") == running
    assert await sent(store) == []


async def test_an_unknown_saga_or_one_of_another_definition_is_not_found(store, saga, clock):
    other = Saga(dataclasses.replace(definition(Outcomes()), name="other"), clock=clock)
    await start(store, other, "o-other")

    for act in (
        saga.get(store, "o-missing"),
        saga.get(store, "o-other"),
        saga.retry_compensation(store, "o-missing", actor=ADMIN, reason="r"),
        saga.resolve(store, "o-other", actor=ADMIN, reason="r"),
    ):
        with pytest.raises(NotFound):
            await act
    assert [s.saga_id for s in (await saga.list_sagas(store))[0]] == []


async def test_a_saga_parked_by_an_earlier_version_is_listed_once_the_upkeep_dated_it(
    store, saga, clock
):
    await park(store, saga, clock, "o-1")
    async with store.transaction() as tx:  # as an earlier version stored it: no updated_at
        parked = await tx.get(SAGAS.name, "o-1")
        del parked["updated_at"]
        await tx.update(SAGAS.name, parked)
    assert (await saga.list_sagas(store, status=PARKED))[0] == []

    assert await saga_record.date_parked(store) == 1
    assert await saga_record.date_parked(store) == 0

    assert [s.saga_id for s in (await saga.list_sagas(store, status=PARKED))[0]] == ["o-1"]


# -- through the gRPC API, with verified tokens ---------------------------------------------


class Issuer:
    """A signing key of the test's own, its key set (as the user service publishes it), and
    the tokens it signs."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self._key = Ed25519PrivateKey.generate()

    async def jwks(self) -> dict:
        jwk = json.loads(OKPAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}

    def metadata(self, user_id: str, *roles: str) -> list[tuple[str, str]]:
        now = int(time.time())
        claims = {"iss": "ordermesh", "aud": "ordermesh", "sub": user_id, "sid": uuid.uuid4().hex,
                  "roles": list(roles), "iat": now, "exp": now + 300}  # fmt: skip
        token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})
        return [("authorization", f"Bearer {token}")]


@pytest.fixture
async def sqlite_store(tmp_path):
    adapter = SqliteStore(tmp_path / "order.db")
    await adapter.open([SAGAS])
    yield adapter
    await adapter.close()


@pytest.fixture
async def served(sqlite_store):
    """A saga engine on the real clock whose steps time out after 0.2 s (a compensation is
    sent twice), its timeouts watched, and ops.v1.SagaService over it as the order service's."""
    quick = definition(Outcomes())
    quick = dataclasses.replace(
        quick, steps=[dataclasses.replace(step, timeout_s=0.2) for step in quick.steps]
    )
    engine = Saga(quick, timeout_scan_interval_s=0.05, max_compensation_sends=2)
    issuer = Issuer()
    server = GrpcServer(
        [saga_operations.service(engine, sqlite_store, service_name="order")],
        authenticator=TokenVerifier(KeySet(issuer.jwks), issuer="ordermesh", audience="ordermesh"),
    )
    await server.start()
    timeouts = asyncio.create_task(engine.watch_timeouts(sqlite_store))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield engine, pb_grpc.SagaServiceStub(channel), issuer
    finally:
        timeouts.cancel()
        await server.stop()


async def park_for_real(store, engine, order_id: str) -> None:
    await start(store, engine, order_id)
    await reply(store, engine, inventory_events.StockReserved(order_id=order_id))
    await reply(store, engine, user_events.CreditLimitExceeded(order_id=order_id))

    async def parked() -> bool:
        return (await engine.get(store, order_id)).status == PARKED

    await eventually(parked, timeout_s=5, what=f"saga {order_id} parked")


async def refusal(call) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code(), refused.value.details() or ""


async def test_an_admin_lists_looks_at_retries_and_resolves_parked_sagas_through_the_api(
    served, sqlite_store
):
    engine, stub, issuer = served
    await park_for_real(sqlite_store, engine, "o-1")
    await park_for_real(sqlite_store, engine, "o-2")
    admin = issuer.metadata(ADMIN, "customer", "admin")

    listed = await stub.ListSagas(
        pb.ListSagasRequest(service="order", status=pb.SAGA_STATUS_NEEDS_OPERATOR),
        metadata=admin,
    )
    assert [(s.saga_id, s.status, s.step) for s in listed.sagas] == [
        ("o-1", pb.SAGA_STATUS_NEEDS_OPERATOR, "reserve_stock"),
        ("o-2", pb.SAGA_STATUS_NEEDS_OPERATOR, "reserve_stock"),
    ]
    assert listed.next_page_token == ""
    retried = await stub.RetryCompensation(
        pb.RetryCompensationRequest(service="order", saga_id="o-1", reason="inventory is back"),
        metadata=admin,
    )
    assert retried.saga.status == pb.SAGA_STATUS_COMPENSATING
    resolved = await stub.ResolveSaga(
        pb.ResolveSagaRequest(service="order", saga_id="o-2", reason="released by hand"),
        metadata=admin,
    )
    assert resolved.saga.status == pb.SAGA_STATUS_COMPENSATED

    looked = await stub.GetSaga(pb.GetSagaRequest(service="order", saga_id="o-2"), metadata=admin)

    assert looked.saga == resolved.saga
    kinds = [pb.SagaHistoryKind.Name(e.kind) for e in looked.history]
    assert kinds[0] == "SAGA_HISTORY_KIND_SAGA_STARTED"
    assert kinds[-3:] == [
        "SAGA_HISTORY_KIND_SAGA_PARKED",
        "SAGA_HISTORY_KIND_OPERATOR_RESOLVED",
        "SAGA_HISTORY_KIND_SAGA_ENDED",
    ]
    assert (looked.history[-2].actor, looked.history[-2].detail) == (ADMIN, "released by hand")
    assert looked.saga.update_time == looked.history[-1].time


async def test_the_api_refuses_non_admins_other_services_unknown_sagas_and_missing_reasons(
    served, sqlite_store
):
    engine, stub, issuer = served
    await park_for_real(sqlite_store, engine, "o-1")
    admin = issuer.metadata(ADMIN, "customer", "admin")
    customer = issuer.metadata("u-customer", "customer")
    resolve = pb.ResolveSagaRequest(service="order", saga_id="o-1", reason="mine now")

    listing = pb.ListSagasRequest(service="order")
    elsewhere = pb.GetSagaRequest(service="inventory", saga_id="o-1")
    unknown = pb.GetSagaRequest(service="order", saga_id="o-9")
    bad_page = pb.ListSagasRequest(service="order", page_token="bm90IG91cnM=")
    unexplained = pb.ResolveSagaRequest(service="order", saga_id="o-1", reason="  ")

    refused = [
        await refusal(stub.ResolveSaga(resolve, metadata=customer)),
        await refusal(stub.ListSagas(listing, metadata=customer)),
        await refusal(stub.ListSagas(listing)),
        await refusal(stub.GetSaga(elsewhere, metadata=admin)),
        await refusal(stub.GetSaga(unknown, metadata=admin)),
        await refusal(stub.ListSagas(bad_page, metadata=admin)),
        await refusal(stub.ResolveSaga(unexplained, metadata=admin)),
    ]

    assert [code for code, _ in refused] == [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    assert "'inventory' is not this service ('order')" in refused[3][1]
    assert (await engine.get(sqlite_store, "o-1")).status == PARKED  # nobody changed it


# -- in the order service of a running system ---------------------------------------------


@pytest.fixture
def own_system(rabbitmq, tmp_path, request):
    """The services as processes of this test's own (it stops the user service), a saga step
    timing out after 1 s and a compensation sent once before its saga is parked."""
    system = System(
        tmp_path / "system",
        amqp_url=rabbitmq.add_vhost(request.node.name[:40]),
        env={"SAGA_STEP_TIMEOUT_S": "1", "SAGA_COMPENSATION_SENDS": "1"},
    )
    system.start()
    yield system
    system.stop()


async def test_the_order_service_serves_its_sagas_to_an_admin_and_the_history_shows_the_action(
    own_system,
):
    shop = Shop(own_system)
    try:
        product = await shop.product(stock=10)
        ada = await shop.register()
        warm = await shop.settled(ada, (await shop.place(ada, [(product.product_id, 1)])).order_id)
        assert warm.status == order_pb.ORDER_STATUS_APPROVED  # the keys of the user service known
        admin = await shop.admin()  # logged in while the user service answers
        # Away, the user service answers neither the credit's reservation nor its release.
        own_system.processes["user"].stop()
        placed = await shop.place(ada, [(product.product_id, 1)])
        async with grpc.aio.insecure_channel(own_system.address("order")) as channel:
            stub = pb_grpc.SagaServiceStub(channel)

            async def parked() -> bool:
                listed = await stub.ListSagas(
                    pb.ListSagasRequest(service="order", status=pb.SAGA_STATUS_NEEDS_OPERATOR),
                    metadata=admin.metadata,
                    timeout=5,
                )
                return placed.order_id in [s.saga_id for s in listed.sagas]

            await eventually(parked, timeout_s=20, what="the saga parked")
            code, _ = await refusal(
                stub.ListSagas(pb.ListSagasRequest(service="order"), metadata=ada.metadata)
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
            await stub.ResolveSaga(
                pb.ResolveSagaRequest(
                    service="order", saga_id=placed.order_id, reason="credit released by hand"
                ),
                metadata=admin.metadata,
                timeout=5,
            )

        entries = await shop.history(ada, placed.order_id)

        resolved, ended_ = entries[-2:]
        assert order_pb.HistoryEntryKind.Name(resolved.kind) == (
            "HISTORY_ENTRY_KIND_OPERATOR_RESOLVED"
        )
        assert resolved.detail.startswith("credit released by hand")
        assert (ended_.kind, ended_.saga_state) == (
            order_pb.HISTORY_ENTRY_KIND_SAGA_ENDED, "COMPENSATED"
        )  # fmt: skip
    finally:
        await shop.close()
