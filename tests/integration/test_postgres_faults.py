"""PostgreSQL faults that say nothing of a message never cost it a retry step nor send it to the
dead letters: a server that takes no writes (a primary fenced read-only, a failover's demoted
primary back as a hot standby), a document that concurrent transactions keep changing past
`run_transaction`'s reruns, and commits queued for the outbox's commit lock. The consumer waits
for each to pass and then processes the message, once.

Real processes only: a private RabbitMQ, and a private PostgreSQL (the session's, or one of the
test's own where the test changes the whole server); the faults are made by the server itself
(ALTER SYSTEM, a restart as a standby then `pg_promote()`, row and advisory locks held by
another connection).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from inventory.v1 import events_pb2
from ordermesh.broker import Broker
from ordermesh.consumer import Consumer
from ordermesh.events import outgoing
from ordermesh.ledger import Ledger
from ordermesh.store import Collection
from ordermesh.store.postgres import OUTBOX_LOCK, PostgresStore
from ordermesh.topology import Subscription

FAST_RETRIES = (0.1, 0.2)
COLLECTIONS = [Collection("totals")]


def subscription(**options) -> Subscription:
    return Subscription(
        service="pgfaults", purpose=f"stock-{uuid.uuid4().hex[:6]}",
        types=[events_pb2.StockAdjusted], retry_delays_s=FAST_RETRIES, **options,
    )  # fmt: skip


async def add_to_total(message: events_pb2.StockAdjusted, envelope, tx) -> None:
    """A participant's handler: changes one document, and replies through the outbox."""
    total = await tx.get("totals", message.product_id)
    if total is None:
        await tx.insert("totals", message.product_id, {"total": message.delta})
    else:
        await tx.update("totals", {**total, "total": total["total"] + message.delta})
    reply = events_pb2.StockAdjusted(product_id=message.product_id, available_stock=1)
    tx.publish(outgoing(reply, producer="participant"), key=message.product_id)


async def eventually(condition, timeout_s: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def dead_letter_count(broker: Broker, queue: str) -> int:
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


class Participant:
    """A consumer of StockAdjusted on a PostgreSQL store, with its ledger."""

    def __init__(self, store: PostgresStore, broker: Broker, shared: Subscription | None = None):
        self.store, self.broker = store, broker
        self.subscription = shared or subscription()
        self.ledger = Ledger()
        self.consumer = Consumer(
            self.subscription, {events_pb2.StockAdjusted: add_to_total},  # type: ignore[dict-item]
            store=store, broker=broker, ledger=self.ledger,
        )  # fmt: skip

    async def send(self, product_id: str, delta: int = 1) -> None:
        event = events_pb2.StockAdjusted(product_id=product_id, delta=delta)
        await self.broker.publish(outgoing(event, producer="test"))

    def count(self, stage: str) -> int:
        return self.ledger.count(stage)

    async def totals(self) -> dict[str, int]:
        async with self.store.transaction() as tx:
            return {d["_id"]: d["total"] for d in await tx.find("totals")}

    async def assert_waiting(self, *, processed: int, for_s: float = 2.0) -> None:
        """While a fault lasts (`for_s`), the message is delivered and waits: not processed, no
        retry step, not dead-lettered, and its waits counted (the ledger's `waited`)."""
        await eventually(lambda: self.count("delivered") > processed, what="the delivery")
        await asyncio.sleep(for_s)
        assert self.count("retried") == 0, "a retry step was used for a good message"
        assert self.count("dead_lettered") == 0, "a good message was dead-lettered"
        assert self.count("processed") == processed
        assert self.count("waited") >= 1, "the waits are not counted"

    async def assert_processed_once_without_retry(self, totals: dict[str, int]) -> None:
        """What a user cares about: each message applied once, its reply committed once, no
        retry step used, nothing dead-lettered."""
        assert self.count("retried") == 0, "a retry step was used for a good message"
        assert self.count("dead_lettered") == 0
        assert await dead_letter_count(self.broker, self.subscription.dead_letter_queue) == 0
        assert await self.totals() == totals
        assert await self.store.count_pending() == self.count("processed")  # a reply each


@pytest.fixture
async def broker(amqp_url):
    broker = Broker(amqp_url, name="pgfaults")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def participant(broker, postgres_url):
    store = PostgresStore(postgres_url)
    await store.open(COLLECTIONS)
    participant = Participant(store, broker)
    await participant.consumer.start()
    yield participant
    await participant.consumer.stop()
    await store.close()


@pytest.fixture
async def own_server(postgres_factory, broker):
    """A PostgreSQL of the test's own (the test changes the whole server), a participant on it,
    and the server's superuser URL for that database."""
    server = postgres_factory()
    url = server.database("participant")
    store = PostgresStore(url)
    await store.open(COLLECTIONS)
    participant = Participant(store, broker)
    await participant.consumer.start()
    yield server, participant, server.url("participant")
    await participant.consumer.stop()
    await store.close()


def superuser(url: str, statement: str) -> list[tuple]:
    """Runs one statement as the server's superuser; its rows, if any."""
    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def fence(url: str, read_only: bool) -> None:
    """Sets `default_transaction_read_only` for the whole server and reloads it, then waits until
    a new connection has the new value. `pg_reload_conf()` only signals the postmaster; once a
    backend it forks afterwards sees the value, the postmaster has signalled every older backend
    too, and their next statement runs under it (a message sent sooner could be processed by a
    backend still writable: seen once in CI)."""
    if read_only:
        superuser(url, "ALTER SYSTEM SET default_transaction_read_only = on")
    else:
        superuser(url, "ALTER SYSTEM RESET default_transaction_read_only")
    superuser(url, "SELECT pg_reload_conf()")
    wanted = [("on" if read_only else "off",)]
    await eventually(
        lambda: superuser(url, "SHOW default_transaction_read_only") == wanted,
        what="the server to reload its settings",
    )  # fmt: skip


async def test_a_primary_fenced_read_only_holds_the_message_until_it_takes_writes_again(
    own_server,
):
    """`default_transaction_read_only` set for the whole server and reloaded, as one fences a
    primary that must take no more writes (or as a managed server does when its disk is full):
    the pooled connections' transactions become read-only (SQLSTATE 25006) under them."""
    _, participant, admin = own_server
    await participant.send("p-1")
    await eventually(lambda: participant.count("processed") == 1, what="a first message")

    await fence(admin, read_only=True)
    await participant.send("p-1", delta=2)
    await participant.assert_waiting(processed=1)

    await fence(admin, read_only=False)
    await eventually(lambda: participant.count("processed") == 2, what="the message processed")
    await participant.assert_processed_once_without_retry({"p-1": 3})


async def test_a_demoted_primary_holds_the_message_until_it_is_promoted(own_server):
    """The server dies and comes back as a hot standby (a failover's old primary, demoted): it
    takes connections and reads, never writes. Promoted (`pg_promote()`), it takes writes."""
    server, participant, admin = own_server
    await asyncio.to_thread(server.kill)
    (server.data / "standby.signal").touch()
    await asyncio.to_thread(server.start)
    assert superuser(admin, "SELECT pg_is_in_recovery()") == [(True,)]

    await participant.send("p-1", delta=5)
    await participant.assert_waiting(processed=0)

    superuser(admin, "SELECT pg_promote()")
    await eventually(lambda: participant.count("processed") == 1, what="the message processed")
    await participant.assert_processed_once_without_retry({"p-1": 5})


async def test_a_document_held_past_every_rerun_holds_the_message_not_a_retry_step(
    participant, postgres_url
):
    """A long transaction elsewhere holds the document the handler changes for 4 s: each of
    `run_transaction`'s ten reruns meets the lock timeout (a VersionConflict). That is
    contention, not the message's fault: it waits, and is processed when the row is free."""
    await participant.send("p-1")
    await eventually(lambda: participant.count("processed") == 1, what="a first message")

    holder = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT * FROM doc_totals WHERE id = 'p-1' FOR UPDATE")
            await participant.send("p-1", delta=2)
            await participant.assert_waiting(processed=1, for_s=4.0)
    finally:
        await holder.close()
    await eventually(lambda: participant.count("processed") == 2, what="the message processed")
    await participant.assert_processed_once_without_retry({"p-1": 3})


async def test_many_consumers_on_one_document_process_every_message_without_a_retry_step(
    broker, postgres_url
):
    """Sixteen consumers of one queue, each with its own pool of the one database (as the
    instances of a service are), and 2,000 messages that all change one document: some
    transactions lose to the others on every rerun of `run_transaction` (before: 8 to 22 retry
    steps used in three runs); every message is applied once and none uses a retry step."""
    shared = subscription(prefetch=4)
    participants = []
    for _ in range(16):
        store = PostgresStore(postgres_url, pool_size=2)
        await store.open(COLLECTIONS)
        participants.append(Participant(store, broker, shared))
    store = participants[0].store
    async with store.transaction() as tx:
        await tx.insert("totals", "hot", {"total": 0})
    try:
        for participant in participants:
            await participant.consumer.start()
        await asyncio.gather(*(participants[0].send("hot") for _ in range(2000)))
        await eventually(
            lambda: sum(p.count("processed") for p in participants) == 2000,
            timeout_s=120, what="2,000 messages processed",
        )  # fmt: skip
        waited = sum(p.count("waited") for p in participants)
        print(f"2,000 messages on one document from 16 consumers: {waited} waits for contention")
        for participant in participants:
            assert participant.count("retried") == participant.count("dead_lettered") == 0
            assert await dead_letter_count(broker, participant.subscription.dead_letter_queue) == 0
        assert await participants[0].totals() == {"hot": 2000}
        assert await store.count_pending() == 2000
    finally:
        for participant in participants:
            await participant.consumer.stop()
            await participant.store.close()


async def test_commits_queued_for_the_outbox_lock_wait_for_it_and_use_no_retry_step(
    participant, postgres_url
):
    """Another transaction holds the outbox's commit lock for 3 s (as a holder does when its
    process gets no CPU at saturation): the participants' replies queue for it and commit once
    it is free; no saga step's command goes to a retry queue (before: at 100 ms, each
    commit failed and ran again, then used retry steps and could be dead-lettered)."""
    holder = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            for n in range(5):
                await participant.send(f"p-{n}")
            await eventually(lambda: participant.count("delivered") == 5, what="deliveries")
            await asyncio.sleep(3.0)
            assert participant.count("processed") == 0
    finally:
        await holder.close()
    await eventually(lambda: participant.count("processed") == 5, what="5 messages processed")
    await participant.assert_processed_once_without_retry({f"p-{n}": 1 for n in range(5)})
    assert participant.count("waited") == 0, "the commits waited for the lock, not the consumer"
