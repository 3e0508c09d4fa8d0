"""The storage port: a unit of work over one service's documents, its outbox and its inbox.

A service keeps its state as documents (JSON-like dicts) in named collections, and reaches them
only inside a transaction. What a transaction guarantees, in every adapter:
- all or nothing: its document writes, the messages it publishes (the outbox) and the inbox
  marks of the messages it handled are committed together or not at all;
- optimistic concurrency: every document carries `_version`; `update()` succeeds only if the
  stored version is the one that was read, else `VersionConflict` (retry the transaction);
- unique fields stay unique: `insert()` or `update()` raises `DuplicateKey`.

An outbox message is pending until the relay marks it sent; one the broker refuses as it is
(a property AMQP cannot carry, a size over the broker's limit) is parked with the reason instead,
out of the relay's way, until an operator makes it pending again (`python -m ordermesh.deadletters
parked` / `unpark`).

Retention (`prune`, run by `ordermesh.runtime`): sent outbox messages are kept a day by default,
only to be seen; inbox marks as long as the deduplication window, which must outlive the
latest a message can come again (a redelivery, a re-publish after a relay crash, retry steps).

Adapters: `ordermesh.store.sqlite.SqliteStore` (the default, one file per service, WAL),
`ordermesh.store.postgres.PostgresStore` (asyncpg, a database per service, shared by instances
on any number of machines) and `ordermesh.store.mongo.MongoStore` (PyMongo async, multi-document
transactions). The one behaviour suite in tests/integration/test_store.py runs against each;
SQLite and PostgreSQL pass it here, MongoStore has never run (no MongoDB server can be
installed on these machines; its cases run only where `MONGODB_URL` names a replica set).

    StoreError
    ├── DuplicateKey      a unique field (or the id) already has this value
    ├── VersionConflict   the document changed since it was read; retry the transaction
    └── StoreUnavailable  the store cannot do the work now (locked past the busy timeout, disk
                          full, I/O error, server unreachable); nothing was committed
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ordermesh.events import Outgoing

__all__ = [
    "Collection",
    "Document",
    "DuplicateKey",
    "Handled",
    "OutboxRecord",
    "OutboxRow",
    "ParkedRow",
    "Store",
    "StoreClock",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
    "VersionConflict",
    "open_store",
    "run_transaction",
    "running",
]

Document = dict[str, Any]
T = TypeVar("T")


class StoreError(Exception):
    pass


class DuplicateKey(StoreError):
    pass


class VersionConflict(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass


@dataclass(frozen=True)
class Collection:
    """A collection and its indexes; declared by the service, created by `Store.open()`."""

    name: str
    unique: Sequence[str] = ()
    indexed: Sequence[str] = ()


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    key: str
    message: Outgoing


@dataclass(frozen=True)
class OutboxRecord:
    """An outbox message as an operator looks it up: when it was sent or parked (Unix times,
    None if not), and why it was parked."""

    row: OutboxRow
    sent_at: float | None
    parked_at: float | None
    parked_reason: str | None


@dataclass(frozen=True)
class Handled:
    """An inbox mark: `consumer` handled `event_id` at `processed_at` (a Unix time)."""

    consumer: str
    event_id: str
    processed_at: float


@dataclass(frozen=True)
class ParkedRow:
    """An outbox message taken out of the relay's way, with why and when (a Unix time)."""

    row: OutboxRow
    reason: str
    parked_at: float


class Transaction(Protocol):
    async def get(self, collection: str, id: str) -> Document | None:
        """The document with this id (with `_id` and `_version`), or None."""

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        """Stores a new document at version 1; DuplicateKey if the id or a unique field is taken."""

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        """Replaces a document read in this or an earlier transaction, if it has not changed."""

    async def delete(self, collection: str, id: str) -> bool:
        """Deletes a document; False if there was none."""

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str = "_id",
        descending: bool = False,
        after: tuple[Any, str] | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        """Documents whose fields equal `where`, ordered by a field then by id.

        `after` is the (order_by value, id) of the last document of the previous page.
        """

    def publish(self, message: Outgoing, *, key: str = "") -> None:
        """Adds a message to the outbox; it leaves only if the transaction commits.

        Messages with the same `key` (an aggregate id) are published in the order they were
        added; an empty key means no ordering is needed.
        """

    async def first_time(self, consumer: str, event_id: str) -> bool:
        """Records that `consumer` handled `event_id`; False if it already had (a duplicate)."""


class Store(Protocol):
    # Set after each commit that added outbox messages: the relay's cue to publish.
    outbox_event: asyncio.Event

    async def open(self, collections: Sequence[Collection] = ()) -> None:
        """Connects and creates what is missing (collections, indexes, outbox, inbox)."""

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work: commits when the block ends normally, rolls back on an exception."""

    def watching(self) -> AbstractAsyncContextManager[None]:
        """While entered, commits of the other processes sharing the store set `outbox_event`
        too (each adapter says how soon), and so does the start of the watch (what was
        committed before it is unseen): the relay holding the outbox lease watches."""

    async def pending(self, limit: int, *, after: int = 0) -> list[OutboxRow]:
        """Unsent outbox messages with a seq above `after`, oldest first."""

    async def mark_sent(self, seqs: Sequence[int]) -> None: ...

    async def park(self, refused: Sequence[tuple[int, str]]) -> None:
        """Parks these pending messages, each (seq, reason): no longer pending, kept."""

    async def parked(self, limit: int = 1000) -> list[ParkedRow]:
        """Parked messages, oldest first."""

    async def unpark(self, event_ids: Iterable[str] | None = None) -> int:
        """Makes these parked messages (all if None) pending again; returns how many."""

    async def outbox_records(
        self, *, event_ids: Sequence[str] = (), correlation_id: str = "", limit: int = 500
    ) -> list[OutboxRecord]:
        """The outbox messages (pending, sent within the retention, or parked) with one of
        these event ids or this correlation id, oldest first. An operator's lookup: it reads
        the whole outbox, which has no index of either (it would slow every write)."""

    async def handled(self, consumers: Sequence[str], event_ids: Sequence[str]) -> list[Handled]:
        """The inbox marks of these consumers for these event ids (by the inbox's key)."""

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Takes or renews a named lease for `owner`; False while another owner holds it."""

    async def prune(self, *, sent_before: float, handled_before: float, limit: int = 1000) -> int:
        """Deletes up to `limit` outbox messages sent before `sent_before` and as many inbox
        marks made before `handled_before` (Unix times); returns how many it deleted."""

    async def count_outbox(self) -> tuple[int, int]:
        """(pending, sent) messages in the outbox; parked ones are neither."""

    async def count_pending(self) -> int:
        """How many outbox messages wait to be published (an index read, unlike count_outbox)."""

    async def count_inbox(self, consumer: str) -> int:
        """How many distinct messages `consumer` has handled."""

    async def ping(self) -> None:
        """Returns if the store answers; raises otherwise (a readiness probe)."""

    async def now(self) -> float:
        """The store's own clock (Unix seconds): the one clock every process sharing the store
        can agree on (`StoreClock`)."""


class StoreClock:
    """The store's clock, read on this host: the local clock plus the offset at which the
    store's was last measured (`sync()`, half a round trip's precision). Deadlines that several
    processes on several hosts set and compare (a saga's step timeouts) are set and compared on
    this one clock, so that a host whose clock runs ahead neither times a step out early nor
    late. Before the first `sync()` it is the local clock."""

    def __init__(self, store: Store, *, local: Callable[[], float] = time.time):
        self._store = store
        self._local = local
        self.offset = 0.0

    async def sync(self) -> None:
        before = self._local()
        store_now = await self._store.now()
        self.offset = store_now - (before + self._local()) / 2

    def __call__(self) -> float:
        return self._local() + self.offset


async def run_transaction(
    store: Store, work: Callable[[Transaction], Awaitable[T]], *, attempts: int = 10
) -> T:
    """Runs `work` in a transaction, again (up to `attempts` times) after a VersionConflict,
    each time after a random pause that doubles (from up to 4 ms, to up to 100 ms):
    transactions that met on the same document (on a networked store, from several
    connections at once) spread out instead of meeting again."""
    for attempt in range(1, attempts + 1):
        try:
            async with store.transaction() as tx:
                return await work(tx)
        except VersionConflict:
            if attempt == attempts:
                raise
        await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
    raise AssertionError("unreachable")


@asynccontextmanager
async def running(work: Coroutine[Any, Any, None], *, name: str) -> AsyncIterator[None]:
    """`work` as a task while the block runs, cancelled when it ends (an adapter's watch)."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def open_store(url: str, *, database: str, pool_size: int = 10) -> Store:
    """The store adapter a URL names (`database`: MongoDB's, `pool_size`: PostgreSQL's
    connections); ValueError naming the URL if none."""
    if url.startswith("sqlite:///"):
        from ordermesh.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from ordermesh.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from ordermesh.store.mongo import MongoStore

        return MongoStore(url, database=database)
    raise ValueError(
        f"STORE_URL={url!r}: expected sqlite:///<path>, postgresql://... or mongodb://..."
    )
