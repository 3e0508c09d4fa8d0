"""The storage port's behaviour, written once and run against every adapter.

SQLite and PostgreSQL (a private server the session starts) always run. MongoDB runs when
MONGODB_URL points at a replica set (transactions need one); no MongoDB server can be installed
on this project's machines, so here it is skipped with that reason.
"""

import asyncio
import base64
import contextlib
import os
import re
import sqlite3
import sys
import time
import uuid

import psycopg
import pytest
from inventory.v1 import events_pb2
from ordermesh import pages
from ordermesh.errors import InvalidArgument
from ordermesh.events import outgoing
from ordermesh.store import Collection, DuplicateKey, VersionConflict, open_store, run_transaction
from ordermesh.store.postgres import PostgresStore
from ordermesh.store.sql import OUTBOX_INSERT, outbox_values, table
from ordermesh.store.sqlite import SqliteStore

COLLECTIONS = [
    Collection("accounts", unique=["email"], indexed=["owner", "created"]),
]


@pytest.fixture(params=["sqlite", "postgres", "mongo"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        adapter = SqliteStore(tmp_path / "service.db")
    elif request.param == "postgres":
        adapter = PostgresStore(request.getfixturevalue("postgres_url"))
    else:
        url = os.environ.get("MONGODB_URL")
        if not url:
            pytest.skip("MONGODB_URL is not set (no MongoDB server can be installed here)")
        from ordermesh.store.mongo import MongoStore

        adapter = MongoStore(url, database=f"test_{uuid.uuid4().hex[:12]}")
    await adapter.open(COLLECTIONS)
    yield adapter
    await adapter.close()


def event(product_id: str = "p-1") -> events_pb2.StockAdjusted:
    return events_pb2.StockAdjusted(product_id=product_id, delta=1, available_stock=1)


async def test_a_committed_document_can_be_read_back(store):
    async with store.transaction() as tx:
        await tx.insert("accounts", "a-1", {"email": "ann@example.com", "owner": "u-1"})

    async with store.transaction() as tx:
        document = await tx.get("accounts", "a-1")

    assert document == {"email": "ann@example.com", "owner": "u-1", "_id": "a-1", "_version": 1}


async def test_a_failed_transaction_leaves_nothing_behind(store):
    async def failing_use_case():
        async with store.transaction() as tx:
            await tx.insert("accounts", "a-1", {"email": "ann@example.com"})
            tx.publish(outgoing(event(), producer="test"))
            await tx.first_time("consumer", "e-1")
            raise RuntimeError("the use case failed")

    with pytest.raises(RuntimeError):
        await failing_use_case()

    async with store.transaction() as tx:
        assert await tx.get("accounts", "a-1") is None
        assert await tx.first_time("consumer", "e-1")
    assert await store.pending(10) == []


async def test_unique_fields_and_ids_stay_unique(store):
    async with store.transaction() as tx:
        await tx.insert("accounts", "a-1", {"email": "ann@example.com"})

    with pytest.raises(DuplicateKey, match="email"):
        async with store.transaction() as tx:
            await tx.insert("accounts", "a-2", {"email": "ann@example.com"})
    with pytest.raises(DuplicateKey):
        async with store.transaction() as tx:
            await tx.insert("accounts", "a-1", {"email": "bob@example.com"})


async def test_an_update_from_a_stale_read_is_refused(store):
    async with store.transaction() as tx:
        created = await tx.insert("accounts", "a-1", {"email": "ann@example.com", "credit": 10})

    async with store.transaction() as tx:
        updated = await tx.update("accounts", {**created, "credit": 5})
    assert updated["_version"] == 2

    with pytest.raises(VersionConflict):
        async with store.transaction() as tx:
            await tx.update("accounts", {**created, "credit": 0})
    async with store.transaction() as tx:
        assert (await tx.get("accounts", "a-1"))["credit"] == 5


async def test_concurrent_read_modify_write_loses_no_update(store):
    """Within one process SQLite serialises these transactions (no conflict can happen: see
    the cross-process test below); MongoDB's concurrent transactions do conflict and retry."""
    async with store.transaction() as tx:
        await tx.insert("accounts", "a-1", {"email": "ann@example.com", "credit": 0})

    async def add_one(tx):
        account = await tx.get("accounts", "a-1")
        await tx.update("accounts", {**account, "credit": account["credit"] + 1})

    await asyncio.gather(*(run_transaction(store, add_one) for _ in range(50)))

    async with store.transaction() as tx:
        assert (await tx.get("accounts", "a-1"))["credit"] == 50


async def test_find_filters_orders_and_pages(store):
    async with store.transaction() as tx:
        for i in range(5):
            await tx.insert("accounts", f"a-{i}", {"email": f"{i}@x", "owner": "u-1", "created": i})
        await tx.insert("accounts", "b-0", {"email": "b@x", "owner": "u-2", "created": 9})

    async with store.transaction() as tx:
        page = {"where": {"owner": "u-1"}, "order_by": "created", "descending": True, "limit": 3}
        first = await tx.find("accounts", **page)
        second = await tx.find("accounts", **page, after=(first[-1]["created"], first[-1]["_id"]))

    assert [d["_id"] for d in first] == ["a-4", "a-3", "a-2"]
    assert [d["_id"] for d in second] == ["a-1", "a-0"]


async def test_a_page_token_resumes_the_list_where_the_last_page_ended(store):
    async with store.transaction() as tx:
        for i in range(3):
            await tx.insert("accounts", f"a-{i}", {"email": f"{i}@x", "created": i + 0.5})

    first, token = await pages.read_page(
        store, "accounts", page_size=2, page_token="", order_by="created"
    )
    second, last = await pages.read_page(
        store, "accounts", page_size=2, page_token=token, order_by="created"
    )

    assert [d["_id"] for d in first + second] == ["a-0", "a-1", "a-2"]
    assert last == ""


@pytest.mark.parametrize(
    "forged_json",
    [
        '[Infinity, "a-1"]',
        '[-Infinity, "a-1"]',
        '[NaN, "a-1"]',
        '[1e400, "a-1"]',
        '["\\u0000", "a-1"]',
        '["\\ud800", "a-1"]',
        '["x", "a\\u0000"]',
        '["x", "\\udc00"]',
    ],
)
async def test_a_forged_page_token_is_invalid_argument_on_every_adapter(store, forged_json):
    """A token holding a value the store cannot compare (PostgreSQL's JSONB has no Infinity nor
    NaN, no text holds NUL, UTF-8 has no lone surrogate) names the token; it is not INTERNAL."""
    async with store.transaction() as tx:
        await tx.insert("accounts", "a-1", {"email": "ann@example.com", "created": 1})
    token = base64.urlsafe_b64encode(forged_json.encode()).decode()

    with pytest.raises(InvalidArgument, match=r"page_token .* is not a token this service issued"):
        await pages.read_page(store, "accounts", page_size=2, page_token=token, order_by="created")


async def test_published_messages_wait_in_the_outbox_in_order(store):
    async with store.transaction() as tx:
        for i in range(3):
            tx.publish(outgoing(event(f"p-{i}"), producer="inventory"), key="p")

    pending = await store.pending(10)

    assert [events_pb2.StockAdjusted.FromString(r.message.payload).product_id for r in pending] == [
        "p-0", "p-1", "p-2",
    ]  # fmt: skip
    assert pending[0].key == "p"
    assert pending[0].message.route.routing_key == "inventory.stock.adjusted"
    assert pending[0].message.envelope.producer == "inventory"
    await store.mark_sent([pending[0].seq])
    assert [r.seq for r in await store.pending(10)] == [r.seq for r in pending[1:]]
    assert [r.seq for r in await store.pending(10, after=pending[1].seq)] == [pending[2].seq]
    assert await store.count_outbox() == (2, 1)
    assert await store.count_pending() == 2


async def test_the_inbox_recognises_a_message_handled_before(store):
    async with store.transaction() as tx:
        assert await tx.first_time("inventory.commands", "e-1")
    async with store.transaction() as tx:
        assert not await tx.first_time("inventory.commands", "e-1")
        assert await tx.first_time("order.replies", "e-1")

    assert await store.count_inbox("inventory.commands") == 1


async def test_a_lease_has_one_owner_until_it_expires(store):
    assert await store.acquire_lease("outbox", "instance-a", ttl_s=0.3)
    assert not await store.acquire_lease("outbox", "instance-b", ttl_s=0.3)
    assert await store.acquire_lease("outbox", "instance-a", ttl_s=0.3)

    await asyncio.sleep(0.4)

    assert await store.acquire_lease("outbox", "instance-b", ttl_s=0.3)


async def test_parked_messages_leave_the_pending_ones_and_come_back_when_unparked(store):
    async with store.transaction() as tx:
        for i in range(3):
            tx.publish(outgoing(event(f"p-{i}"), producer="test"))
    first, second, third = await store.pending(10)

    await store.park([(second.seq, "refused: too large")])

    assert [row.seq for row in await store.pending(10)] == [first.seq, third.seq]
    [parked] = await store.parked()
    assert (parked.row.seq, parked.reason) == (second.seq, "refused: too large")
    assert parked.row.message.envelope == second.message.envelope
    assert await store.count_outbox() == (2, 0)
    assert await store.count_pending() == 2  # the parked one does not wait for the relay
    assert await store.unpark([second.message.envelope.event_id]) == 1
    assert [row.seq for row in await store.pending(10)] == [first.seq, second.seq, third.seq]
    assert await store.parked() == []


async def test_prune_deletes_only_what_is_past_retention(store):
    async with store.transaction() as tx:
        for i in range(3):
            tx.publish(outgoing(event(f"p-{i}"), producer="test"))
        await tx.first_time("consumer", "e-old")
    rows = await store.pending(10)
    await store.mark_sent([row.seq for row in rows[:2]])  # the third is still pending
    await asyncio.sleep(0.01)
    cutoff = time.time()  # everything so far is older than this
    await asyncio.sleep(0.01)
    async with store.transaction() as tx:
        await tx.first_time("consumer", "e-new")

    deleted = await store.prune(sent_before=cutoff, handled_before=cutoff)

    assert deleted == 3  # two sent rows, one inbox mark
    assert [row.seq for row in await store.pending(10)] == [rows[2].seq]
    assert await store.count_outbox() == (1, 0)
    assert await store.count_inbox("consumer") == 1
    async with store.transaction() as tx:
        assert await tx.first_time("consumer", "e-new") is False


WORKER = """
import asyncio, sys
from ordermesh.store import Collection, VersionConflict, open_store

async def main(url, mode, times):
    store = open_store(url, database="test")
    await store.open([Collection("accounts")])
    conflicts = 0
    for _ in range(times):
        while True:  # read in one transaction, write in the next: optimistic, retried
            async with store.transaction() as tx:
                account = await tx.get("accounts", "a-1")
            if mode == "pause":  # the test changes the document meanwhile, from elsewhere
                print("read", flush=True)
                sys.stdin.readline()
            try:
                async with store.transaction() as tx:
                    await tx.update("accounts", {**account, "credit": account["credit"] + 1})
                break
            except VersionConflict:
                conflicts += 1
                mode = ""
    await store.close()
    print("conflicts", conflicts, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def worker(url: str, mode: str, times: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, url, mode, str(times),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def conflicts_of(process: asyncio.subprocess.Process) -> int:
    out, _ = await process.communicate()
    assert process.returncode == 0
    return int(out.decode().split()[-1])


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request, tmp_path) -> str:
    """A store URL that several processes open, as the instances of a service do."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


async def test_a_watching_store_learns_of_what_another_instance_commits(shared_url):
    """The relay holding the outbox lease watches its store, and so publishes what the other
    instances commit without waiting for its next poll."""
    watcher, other = (open_store(shared_url, database="test") for _ in range(2))
    await watcher.open()
    await other.open()
    try:
        async with watcher.watching():
            await asyncio.wait_for(watcher.outbox_event.wait(), 10)  # the watch has begun
            watcher.outbox_event.clear()
            async with other.transaction() as tx:
                tx.publish(outgoing(event(), producer="inventory"))

            await asyncio.wait_for(watcher.outbox_event.wait(), 10)
        assert len(await watcher.pending(10)) == 1
    finally:
        await watcher.close()
        await other.close()


async def test_a_watching_sqlite_store_is_told_of_outbox_commits_once_they_are_visible(tmp_path):
    """SQLite's notice between processes is given after a commit that added outbox messages has
    returned (a file touched), never by the WAL's writes, which come before the commit is
    visible (a read on them could miss it, leaving it to the next poll): a commit without
    messages says nothing, one with messages is readable when it is heard."""
    path = tmp_path / "shared.db"
    watcher, other = SqliteStore(path), SqliteStore(path)
    await watcher.open([Collection("accounts")])
    await other.open([Collection("accounts")])
    try:
        async with watcher.watching():
            await asyncio.wait_for(watcher.outbox_event.wait(), 10)  # the watch has begun
            watcher.outbox_event.clear()
            async with other.transaction() as tx:
                await tx.insert("accounts", "a-1", {"credit": 0})
            await asyncio.sleep(0.3)
            assert not watcher.outbox_event.is_set()

            for n in range(20):
                async with other.transaction() as tx:
                    tx.publish(outgoing(event(f"p-{n}"), producer="inventory"))
                await asyncio.wait_for(watcher.outbox_event.wait(), 10)
                watcher.outbox_event.clear()
                assert len(await watcher.pending(100)) == n + 1
    finally:
        await watcher.close()
        await other.close()


async def test_a_stale_write_from_another_process_conflicts_and_its_retry_applies(shared_url):
    """SQLite serialises the transactions of one process: the optimistic version check is
    proven across processes, where a document changes between a read and the write after it
    (on PostgreSQL, instances on other machines do the same)."""
    store = open_store(shared_url, database="test")
    await store.open([Collection("accounts")])
    async with store.transaction() as tx:
        await tx.insert("accounts", "a-1", {"credit": 0})
    try:
        paused = await worker(shared_url, "pause", 1)
        assert await paused.stdout.readline() == b"read\n"
        assert await conflicts_of(await worker(shared_url, "", 1)) == 0
        paused.stdin.write(b"go\n")
        assert await conflicts_of(paused) == 1  # its first write was refused, then retried

        racing = [await worker(shared_url, "", 50) for _ in range(2)]
        await asyncio.gather(*(conflicts_of(p) for p in racing))

        async with store.transaction() as tx:
            assert (await tx.get("accounts", "a-1"))["credit"] == 102  # no update lost
    finally:
        await store.close()


def _sqlite(path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def _postgres(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(sql).fetchall()


def _shape(definition: str) -> str:
    """An index's columns and condition, however its database prints them."""
    columns, _, condition = definition.partition(" WHERE ")
    return re.sub(r"[()\s]", "", columns.rsplit(" (", 1)[-1] + "|" + condition).lower()


SQLITE_INDEXES = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql NOT NULL"


async def test_sqlite_and_postgresql_make_the_same_tables_and_indexes(tmp_path, postgres_url):
    path = tmp_path / "service.db"
    for store in (SqliteStore(path), PostgresStore(postgres_url)):
        await store.open(COLLECTIONS)
        await store.close()
    sqlite_tables = _sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    postgres_tables = _postgres(
        postgres_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    sqlite_indexes = dict(_sqlite(path, SQLITE_INDEXES))
    postgres_indexes = dict(
        _postgres(
            postgres_url,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT LIKE '%_pkey'",
        )
    )

    assert set(sqlite_tables) == set(postgres_tables) == {
        ("outbox",), ("inbox",), ("leases",), ("doc_accounts",),
    }  # fmt: skip
    assert set(sqlite_indexes) == set(postgres_indexes)
    for name in ("outbox_pending", "outbox_sent", "outbox_event", "inbox_processed"):
        assert _shape(sqlite_indexes[name]) == _shape(postgres_indexes[name]), name


# The SQLite schema of the version before messages could be parked.
EARLIER_SQLITE_SCHEMA = """
CREATE TABLE outbox (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, event_id TEXT NOT NULL,
    type TEXT NOT NULL, exchange TEXT NOT NULL, exchange_type TEXT NOT NULL,
    routing_key TEXT NOT NULL, is_command INTEGER NOT NULL, payload BLOB NOT NULL,
    envelope TEXT NOT NULL, sent_at REAL);
CREATE INDEX outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
CREATE TABLE inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, processed_at REAL NOT NULL,
    PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
"""


async def test_a_sqlite_file_of_an_earlier_version_opens_with_its_messages(tmp_path):
    """Its outbox gets the columns and indexes it lacks; an index it has keeps its definition
    (outbox_pending without `AND parked_at IS NULL`), and serves the same reads."""
    path = tmp_path / "service.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(EARLIER_SQLITE_SCHEMA)
        db.execute(
            f"INSERT INTO outbox ({OUTBOX_INSERT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            outbox_values(outgoing(event("p-0"), producer="test"), "p"),
        )
        db.commit()
    store = SqliteStore(path)
    await store.open(COLLECTIONS)
    try:
        async with store.transaction() as tx:
            tx.publish(outgoing(event("p-1"), producer="test"), key="p")
        first, second = await store.pending(10)
        await store.park([(first.seq, "refused")])

        assert await store.pending(10) == [second]
        assert await store.count_pending() == 1
        assert await store.unpark([first.message.envelope.event_id]) == 1
        assert [row.seq for row in await store.pending(10)] == [first.seq, second.seq]
    finally:
        await store.close()
    indexes = dict(_sqlite(path, SQLITE_INDEXES))
    assert indexes["outbox_pending"].endswith("WHERE sent_at IS NULL")
    assert indexes["outbox_event"].endswith("WHERE parked_at IS NOT NULL")


def rows_in_the_database_file(path, collection: str) -> int:
    """What the SQLite file itself holds, the WAL ignored: what checkpoints have copied; -1 when
    the read met a checkpoint copying pages (read as `immutable`, without SQLite's locks, the
    file can be half-written: "database disk image is malformed", seen once in CI)."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {table(collection)}").fetchone()[0]
    except sqlite3.OperationalError:  # the table itself not checkpointed yet
        return 0
    except sqlite3.DatabaseError:  # torn by a checkpoint under way: the next read tells
        return -1
    finally:
        db.close()


WRITER = """
import asyncio, sys
from ordermesh.events import outgoing
from ordermesh.store import Collection
from ordermesh.store.sqlite import SqliteStore
from inventory.v1 import events_pb2

async def main(path, name, times):
    store = SqliteStore(path, checkpoint_interval_s=0.005)
    await store.open([Collection("things")])
    for n in range(times):
        async with store.transaction() as tx:
            await tx.insert("things", f"{name}-{n}", {"n": n})
            reserved = events_pb2.StockReserved(order_id=f"{name}-{n}")
            tx.publish(outgoing(reserved, producer="inventory"))
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_processes_sharing_a_sqlite_file_lose_no_commit_while_it_is_checkpointed(tmp_path):
    """The instances of a service share one SQLite file, each with its own checkpointer copying
    the WAL while the others commit: every committed document and outbox message is there at the
    end. (A checkpointer that read the file with an open() of its own dropped its process's
    locks when it closed it, and committed transactions vanished.) They start together on a
    new file, as `make up`'s instances do: each waits while another turns WAL on."""
    path = tmp_path / "shared.db"  # made by the writers, which start together
    processes, times = 6, 150
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), f"w{n}", str(times)
        )
        for n in range(processes)
    ]
    assert [await writer.wait() for writer in writers] == [0] * processes
    assert _sqlite(path, f"SELECT count(*) FROM {table('things')}") == [(processes * times,)]
    assert _sqlite(path, "SELECT count(*) FROM outbox") == [(processes * times,)]


async def test_sqlite_checkpoints_what_is_written_after_an_idle_spell(tmp_path):
    """The checkpointer does nothing while nothing was committed since its last full checkpoint,
    and copies each commit that follows (the WAL then restarts from its beginning)."""
    path = tmp_path / "idle.db"
    store = SqliteStore(path, checkpoint_interval_s=0.05)
    await store.open([Collection("things")])

    async def written_through(count: int) -> None:
        deadline = time.monotonic() + 10
        while rows_in_the_database_file(path, "things") != count:
            assert time.monotonic() < deadline, "not checkpointed"
            await asyncio.sleep(0.05)

    try:
        async with store.transaction() as tx:
            await tx.insert("things", "a", {"n": 1})
        await written_through(1)
        await asyncio.sleep(0.2)
        begun = store._checkpointer.checkpoints
        await asyncio.sleep(0.5)  # idle: about 10 rounds, each finding nothing new
        assert store._checkpointer.checkpoints == begun
        for n in range(2, 12):  # each commit right after a checkpoint, as the WAL restarts
            async with store.transaction() as tx:
                await tx.insert("things", f"t-{n}", {"n": n})
            await written_through(n)
    finally:
        await store.close()
