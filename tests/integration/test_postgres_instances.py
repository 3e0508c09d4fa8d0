"""Instances of one service sharing a PostgreSQL store, in processes of their own, as on several
machines: one relay publishes at a time (the lease), and passes on when its holder is killed;
the events of a key arrive in the order they were committed, whichever relay published them;
two consumers sharing one inbox apply each event once while they are killed in turn.

Every process here (a private broker, PostgreSQL, the producers and consumers) is started by
the test, and killed by it by PID. What is reconciled comes from the databases: the producers'
outbox (every committed event, in commit order), the consumers' inbox, per-product totals and
the order in which each product's events were applied. Last, the database server itself is
killed under the flow.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
from inventory.v1 import events_pb2
from ordermesh.events import outgoing
from ordermesh.store import Collection, StoreUnavailable, run_transaction
from ordermesh.store.postgres import OUTBOX_LOCK, PostgresStore

from harness import ManagedProcess
from tests.integration.flow import CONSUMER, app


def rows(url: str, sql: str, *parameters) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(sql, parameters).fetchall()


async def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


class Shared:
    """A producer database and a consumer database on one PostgreSQL, and a private broker."""

    def __init__(self, broker, postgres, directory: Path):
        self.broker = broker
        self.postgres = postgres
        self.directory = directory
        self.producer_url = postgres.database("producer")
        self.consumer_url = postgres.database("consumer")
        self.processes: list[ManagedProcess] = []

    def producer(self, name: str, total: int, *options: str) -> ManagedProcess:
        process = app("produce", self.directory, "--instance", name, "--store", self.producer_url,
                      "--amqp", self.broker.url, "--total", str(total), "--lease-ttl", "2",
                      *options, name=name)  # fmt: skip
        self.processes.append(process)
        return process

    def consumer(self, name: str) -> ManagedProcess:
        process = app("consume", self.directory, "--instance", name, "--store", self.consumer_url,
                      "--amqp", self.broker.url, name=name)  # fmt: skip
        self.processes.append(process)
        return process

    def committed(self) -> list[tuple[str, str]]:
        """(event id, key) of every committed event, in commit order."""
        return rows(self.producer_url, "SELECT event_id, key FROM outbox ORDER BY seq")  # type: ignore[return-value]

    def handled(self) -> int:
        [(count,)] = rows(
            self.consumer_url, "SELECT COUNT(*) FROM inbox WHERE consumer = %s", CONSUMER
        )
        return int(count)

    def assert_each_applied_once(self) -> list[tuple[str, str]]:
        committed = self.committed()
        [(unconfirmed,)] = rows(
            self.producer_url, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"
        )
        handled = {r[0] for r in rows(self.consumer_url, "SELECT event_id FROM inbox")}
        assert unconfirmed == 0
        assert len({e for e, _ in committed}) == len(committed)
        assert handled == {e for e, _ in committed}, "lost or unknown events"
        totals = dict(rows(self.consumer_url, "SELECT id, (doc->>'total')::int FROM doc_totals"))
        per_key: dict[str, int] = defaultdict(int)
        for _, key in committed:
            per_key[key] += 1
        assert totals == per_key, "an event applied twice"
        return committed

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def shared(rabbitmq_factory, postgres_factory, tmp_path):
    world = Shared(rabbitmq_factory(), postgres_factory(), tmp_path)
    yield world
    world.stop()


async def test_one_relay_at_a_time_passes_on_when_killed_and_keeps_each_keys_order(shared):
    total = 6_000
    consumer = shared.consumer("consumer")
    await asyncio.to_thread(consumer.start)
    producers = [shared.producer(f"producer-{n}", total, "--rate", "300") for n in (1, 2)]
    for producer in producers:
        await asyncio.to_thread(producer.start)

    kills = 0
    for _ in range(4):  # kill whichever instance holds the relay's lease, then restart it
        await asyncio.sleep(3)
        [(owner,)] = await asyncio.to_thread(
            rows, shared.producer_url, "SELECT owner FROM leases WHERE name = 'outbox'"
        )
        holder = next(p for p in producers if p.name == owner)
        if not holder.running:
            continue
        await asyncio.to_thread(holder.kill)
        kills += 1
        await asyncio.to_thread(holder.start)

    await wait_until(
        lambda: not any(p.running for p in producers), 240, "the producers to confirm everything"
    )
    committed = shared.committed()
    await wait_until(lambda: shared.handled() >= len(committed), 120, "every event handled")
    committed = shared.assert_each_applied_once()
    assert kills >= 3, "the lease holder was never killed: the test proved nothing"

    # Per key, the order of application is the order of commit (outbox seq), across relays.
    applied = rows(
        shared.consumer_url,
        "SELECT doc->>'product', id FROM doc_applied ORDER BY doc->>'product', (doc->>'at')::int",
    )
    applied_order: dict[str, list[str]] = defaultdict(list)
    for product, event_id in applied:
        applied_order[product].append(event_id)
    committed_order: dict[str, list[str]] = defaultdict(list)
    for event_id, key in committed:
        committed_order[key].append(event_id)
    assert applied_order == committed_order
    print(f"{len(committed)} events from 2 producers, lease holder killed {kills} times: "
          f"each applied once, each key in commit order")  # fmt: skip


async def test_two_consumers_sharing_one_inbox_apply_each_event_once_while_killed(shared):
    total = 20_000
    consumers = [shared.consumer(f"consumer-{n}") for n in (1, 2)]
    await asyncio.to_thread(consumers[0].start)  # declares the queue the backlog goes to
    await asyncio.to_thread(consumers[0].stop)
    producer = shared.producer("producer", total)
    await asyncio.to_thread(producer.start)
    await wait_until(lambda: not producer.running, 180, "the backlog to be published")

    for consumer in consumers:
        await asyncio.to_thread(consumer.start)
    kills = 0
    while shared.handled() < total and kills < 6:
        await asyncio.sleep(1.0)
        victim = consumers[kills % 2]
        await asyncio.to_thread(victim.kill)
        kills += 1
        await asyncio.to_thread(victim.start)

    await wait_until(lambda: shared.handled() >= total, 180, f"{total} events handled")
    shared.assert_each_applied_once()
    assert kills >= 3, "the consumers drained before they were killed: the test proved nothing"


async def test_postgresql_killed_during_the_flow_is_waited_out_and_nothing_is_lost(shared):
    """SIGKILL of the database server (and its backends) while events are committed, relayed
    and consumed: producers and consumer wait for it (StoreUnavailable), then go on."""
    total = 6_000
    consumer = shared.consumer("consumer")
    await asyncio.to_thread(consumer.start)
    producer = shared.producer("producer", total, "--rate", "500")
    await asyncio.to_thread(producer.start)
    for _ in range(3):
        await asyncio.sleep(2.5)
        await asyncio.to_thread(shared.postgres.kill)
        await asyncio.sleep(1.0)  # the services find it gone
        await asyncio.to_thread(shared.postgres.start)

    await wait_until(lambda: not producer.running, 180, "the producer to confirm everything")
    committed = shared.committed()
    await wait_until(lambda: shared.handled() >= len(committed), 120, "every event handled")
    shared.assert_each_applied_once()
    assert consumer.running, "the consumer gave up instead of waiting the database out"


async def cut_off(store: PostgresStore, url: str) -> None:
    """A transaction whose connection's server process is ended, by another connection,
    before it commits."""
    async with store.transaction() as tx:
        await tx.insert("things", "a", {"n": 1})
        event = events_pb2.StockAdjusted(product_id="p")
        tx.publish(outgoing(event, producer="t"), key="p")
        pid = await tx._db.fetchval("SELECT pg_backend_pid()")
        rows(url, "SELECT pg_terminate_backend(%s)", pid)


async def test_a_transaction_whose_connection_is_cut_is_store_unavailable(postgres_url):
    """The caller gets StoreUnavailable, which it waits out, not asyncpg's InterfaceError
    (seen once in `.ci/run`, with the server killed: it crashed a producer)."""
    store = PostgresStore(postgres_url)
    await store.open([Collection("things")])
    try:
        with pytest.raises(StoreUnavailable):
            await cut_off(store, postgres_url)
        async with store.transaction() as tx:  # the store goes on, on a new connection
            assert await tx.get("things", "a") is None
        assert await store.count_outbox() == (0, 0)
    finally:
        await store.close()


async def test_a_commit_kept_waiting_for_the_outbox_lock_waits_its_turn_not_failed(postgres_url):
    """Another transaction holds the outbox's lock past the rows' lock timeout (as a holder
    does when its process gets no CPU at saturation): the commit waits its turn and commits, at
    its first attempt. At the rows' 100 ms it failed (VersionConflict) and ran its whole
    transaction again, up to failing for good under contention: an order placed in `make
    bench-saga` on PostgreSQL was answered INTERNAL, then ABORTED. Held past
    `outbox_lock_timeout_s` (its holder stuck), the commit is StoreUnavailable, which every
    caller waits out, and nothing of it is committed."""
    store = PostgresStore(postgres_url, lock_timeout_s=0.05, outbox_lock_timeout_s=1.0)
    await store.open([Collection("things")])
    attempts = 0

    async def publish(tx, id: str) -> None:
        nonlocal attempts
        attempts += 1
        await tx.insert("things", id, {"n": 1})
        tx.publish(outgoing(events_pb2.StockAdjusted(product_id=id), producer="test"))

    holder = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            placing = asyncio.create_task(run_transaction(store, lambda tx: publish(tx, "t-1")))
            await asyncio.sleep(0.5)  # ten times the rows' lock timeout
            assert not placing.done()
        await placing
        assert attempts == 1, "the commit was run again instead of waiting for the lock"
        assert await store.count_pending() == 1

        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match="outbox's commit lock"):
                async with store.transaction() as tx:
                    await publish(tx, "t-2")
            assert time.monotonic() - began >= 1.0
        assert await store.count_pending() == 1
    finally:
        await holder.close()
        await store.close()


async def test_an_instance_opens_its_store_while_another_writes_to_it(postgres_url):
    """Every table holds a writer's lock (as the commits of an instance under load do): a new
    instance's store opens all the same, its schema being there already. Such an instance,
    added under load, exited at its lock timeout before (`make bench-scale`): CREATE INDEX IF
    NOT EXISTS waits for the table's lock before it finds the index exists."""
    things = Collection("things", unique=("sku",), indexed=("n",))
    first = PostgresStore(postgres_url)
    await first.open([things])
    holder = await psycopg.AsyncConnection.connect(postgres_url)
    second = PostgresStore(postgres_url, lock_timeout_s=0.2)
    try:
        async with holder.transaction():
            await holder.execute(
                "LOCK TABLE outbox, inbox, leases, doc_things IN ROW EXCLUSIVE MODE"
            )
            await second.open([things])
        async with second.transaction() as tx:
            await tx.insert("things", "t-1", {"sku": "S-1", "n": 1})
    finally:
        await holder.close()
        await first.close()
        await second.close()


async def test_the_outbox_listener_listens_again_after_its_connection_is_cut(postgres_url):
    """The relay holding the lease learns of other instances' commits through LISTEN on a
    connection of its own: cut by the server (a restart, a failover), it connects again and
    goes on hearing them."""
    watcher, other = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await watcher.open()
    await other.open()
    listeners = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
    )
    try:
        async with watcher.watching():
            await asyncio.wait_for(watcher.outbox_event.wait(), 10)
            watcher.outbox_event.clear()
            assert rows(postgres_url, listeners) == [(True,)]

            await asyncio.wait_for(watcher.outbox_event.wait(), 10)  # listening again
            watcher.outbox_event.clear()
            async with other.transaction() as tx:
                tx.publish(outgoing(events_pb2.StockAdjusted(product_id="p"), producer="t"))
            await asyncio.wait_for(watcher.outbox_event.wait(), 10)
    finally:
        await watcher.close()
        await other.close()
