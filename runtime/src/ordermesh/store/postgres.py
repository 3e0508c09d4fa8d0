"""The PostgreSQL adapter of the storage port: asyncpg and its pool of connections.

One database per service (its URL names it); instances on any number of machines share it.
Documents are JSONB in a table per collection, with expression indexes on `doc -> 'field'`.
`open()` creates what is missing of them; a service runs as a role that may not (its database's
runtime role, ordermesh.deploy.databases), so its owner creates them first (the project's
schema step), and
`open()` then only finds them: what is missing is a StoreError that says so.

Transactions are READ COMMITTED. Optimistic versions hold across instances because an update
is `UPDATE ... WHERE id = $1 AND version = $2`: PostgreSQL re-checks the condition on the row
a concurrent transaction committed, so the later one changes nothing and raises
VersionConflict. A deadlock or a serialization failure is a VersionConflict too (the
transaction is simply run again). A transaction waits at most `lock_timeout_s` for a row that
another one is changing, then conflicts too: optimistic transactions never queue behind each
other, and two that lock rows in opposite orders part at once instead of waiting for
PostgreSQL's deadlock detection (a second). The inbox is `INSERT ... ON CONFLICT DO NOTHING`: of two
instances handling the same message, the second waits for the first and then finds the mark.

Outbox order: a sequence hands out `seq` when a row is inserted, not when it commits, so two
transactions could commit their rows out of seq order and the relay, which reads on from the
highest seq it has seen, would pass over the later-committed lower one. A transaction that
publishes therefore takes a transaction-level advisory lock just before it writes its outbox
rows at commit: such commits are serialised (only their last moment, not their work), and seq
order is commit order. It waits for that lock up to `outbox_lock_timeout_s` (5 s), not the
rows' `lock_timeout_s`: its holder waits for nothing after taking it (the lock is its last), so
the wait is a queue of commits, never a conflict nor a deadlock; at 100 ms, commits queued
behind busy ones failed and ran their whole transaction again, up to failing for good
(measured: docs/decisions.md). A lock not free even then (its holder stuck) is
StoreUnavailable. It also notifies `OUTBOX_CHANNEL` (delivered at commit): the relay of
whichever instance holds the outbox lease listens while it holds it (`watching`), and so
publishes what other instances commit at once rather than at its next poll.

Errors that say the server cannot do the work now (connection refused or lost, the server
shutting down, out of disk or memory, no pooled connection within `pool_timeout_s`, the server
read-only: a demoted primary, a hot standby, a server fenced with
`default_transaction_read_only`) raise StoreUnavailable; nothing was committed. The connection
that met such an error is closed, and the pool opens a new one in its place; new connections
are only ever to a server that takes writes (`target_session_attrs=read-write` unless the URL
says otherwise; of a URL's several hosts, the primary): a connection to a read-only server is
refused at once, as StoreUnavailable too.

asyncpg rather than psycopg 3: with the store's own operations, 1.5-1.8x the throughput
(`make bench-store-drivers`, docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
from asyncpg import exceptions as pg_errors

from ordermesh.logging import get_logger
from ordermesh.store import (
    Collection,
    Document,
    DuplicateKey,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    running,
)
from ordermesh.store.sql import body, table
from ordermesh.store.sql.dialect import POSTGRES, schema
from ordermesh.store.sql.outbox import SqlOutbox
from ordermesh.store.sql.transaction import SqlTransaction

__all__ = ["OUTBOX_LOCK", "PostgresStore"]

log = get_logger(__name__)

# Taken by every transaction that writes outbox rows (see the module doc), and while creating
# the schema (two instances starting at once would race on CREATE ... IF NOT EXISTS).
OUTBOX_LOCK = 0x6F75_7462_6F78  # "outbox"
SCHEMA_LOCK = 0x7363_6865_6D61  # "schema"
OUTBOX_CHANNEL = "ordermesh_outbox"
# Rerun the transaction: another one got there first, or holds a row it must change.
CONFLICTS = (
    pg_errors.DeadlockDetectedError,
    pg_errors.SerializationError,
    pg_errors.LockNotAvailableError,
)
# The server cannot do the work now: unreachable, the connection lost (class 08), out of
# resources (53), shutting down or cancelling (57), a system error (58), no connection in time.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    pg_errors.PostgresConnectionError,
    pg_errors.InsufficientResourcesError,
    pg_errors.OperatorInterventionError,
    pg_errors.PostgresSystemError,
    pg_errors.ConnectionDoesNotExistError,
    # A connection whose server went away mid-operation can be left in a state asyncpg cannot
    # use ("cannot switch to state ...; another operation is in progress": MagicStack/asyncpg
    # issues 784 and 1069): such a connection is closed, never given back to the pool as it is.
    # Also the refusal of a server that takes no writes (TargetServerAttributeNotMatched).
    pg_errors.InternalClientError,
    # SQLSTATE 25006: the server takes no writes now (a failover's demoted primary, a hot
    # standby, `default_transaction_read_only` set to fence it). The store never asks for a
    # read-only transaction, so it says nothing of the work: wait for a primary. The connection
    # is closed: a new one goes to whichever host takes writes.
    pg_errors.ReadOnlySQLTransactionError,
)


def _duplicate(exc: pg_errors.UniqueViolationError, collection: str) -> DuplicateKey:
    constraint = getattr(exc, "constraint_name", None) or ""
    prefix = f"doc_{collection}_u_"
    what = constraint.removeprefix(prefix) if constraint.startswith(prefix) else "_id"
    return DuplicateKey(f"{collection}: another document has the same {what}")


async def _decode_json(db: asyncpg.Connection) -> None:
    """JSONB columns as Python values, in and out."""
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset(db: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: no transaction left open. The
    store keeps no session state (its advisory locks are the transaction's), so asyncpg's own
    reset (a round trip of RESET ALL, UNLISTEN, ... per transaction) is not needed."""
    if db.is_in_transaction():
        await db.execute("ROLLBACK")


class _Executor:
    """Statements on one pooled connection; a row count from the command's status."""

    __slots__ = ("_db",)

    def __init__(self, db: asyncpg.Connection):
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._db.fetch(sql, *args)]

    async def execute(self, sql: str, *args: Any) -> int:
        return _count(await self._db.execute(sql, *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)


class _Transaction(SqlTransaction):
    """A write that clashes on a unique field leaves the transaction usable, as in every
    adapter: an insert does nothing on conflict, an update runs in a savepoint."""

    def __init__(
        self,
        db: asyncpg.Connection,
        unique: Mapping[str, Sequence[str]],
        *,
        outbox_lock_timeout_s: float,
    ):
        super().__init__(_Executor(db), POSTGRES)
        self._db = db
        self._unique = unique
        self._outbox_lock_timeout_s = outbox_lock_timeout_s

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        # ON CONFLICT DO NOTHING: a duplicate leaves the transaction usable, as in every adapter.
        status = await self._db.execute(
            f"INSERT INTO {table(collection)} (id, version, doc) VALUES ($1, 1, $2) "
            "ON CONFLICT DO NOTHING",
            id,
            body(document),
        )
        if status != "INSERT 0 1":
            what = await self._clash(collection, id, document)
            raise DuplicateKey(f"{collection}: another document has the same {what}")
        return {**document, "_id": id, "_version": 1}

    async def _clash(self, collection: str, id: str, document: Mapping[str, Any]) -> str:
        """Which of the id and the unique fields another document already has."""
        if await self.get(collection, id) is not None:
            return "_id"
        for field in self._unique.get(collection, ()):
            found = await self._db.fetchval(
                f"SELECT 1 FROM {table(collection)} "
                f"WHERE {POSTGRES.field(field)} = {POSTGRES.compared(field, 1)}",
                document.get(field),
            )
            if found is not None:
                return field
        return "_id"

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        id, version = document["_id"], document["_version"]
        sql = (
            f"UPDATE {table(collection)} SET version = version + 1, doc = $1 "
            "WHERE id = $2 AND version = $3"
        )
        if collection in self._unique:
            # A savepoint where a unique field may clash, so that the transaction stays usable.
            try:
                async with self._db.transaction():
                    status = await self._db.execute(sql, body(document), id, version)
            except pg_errors.UniqueViolationError as exc:
                raise _duplicate(exc, collection) from None
        else:
            status = await self._db.execute(sql, body(document), id, version)
        if status != "UPDATE 1":
            raise VersionConflict(f"{collection}/{id} changed since version {version} was read")
        return {**document, "_version": version + 1}

    async def flush_outbox(self) -> None:
        """Takes the outbox's commit lock (see the module doc), then writes the rows."""
        lock_timeout_s = self._outbox_lock_timeout_s
        # One round trip (the simple protocol: constants only): the lock's own timeout, the lock.
        try:
            await self._db.execute(
                f"SET LOCAL lock_timeout = {int(lock_timeout_s * 1000)}; "
                f"SELECT pg_advisory_xact_lock({OUTBOX_LOCK}), pg_notify('{OUTBOX_CHANNEL}', '')"
            )
        except pg_errors.LockNotAvailableError as exc:
            raise StoreUnavailable(
                f"the outbox's commit lock was not free within {lock_timeout_s:g} s: another "
                "transaction holds it (stuck?)"
            ) from exc
        await super().flush_outbox()


def _writable(url: str) -> dict[str, str]:
    """asyncpg's connection options that refuse a server taking no writes, unless `url` says
    which servers it wants itself."""
    return {} if "target_session_attrs" in url else {"target_session_attrs": "read-write"}


def _lost(db: asyncpg.Connection) -> bool:
    """Whether a pooled connection closed under its user (the pool may have taken it back
    already, when it saw it close)."""
    try:
        return bool(db.is_closed())
    except pg_errors.InterfaceError:  # "connection has been released back to the pool"
        return True


class PostgresStore(SqlOutbox):
    """The outbox, inbox and lease statements are SqlOutbox's; this class keeps the pool, its
    error classification, the schema's and the outbox's advisory locks, and LISTEN."""

    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        lock_timeout_s: float = 0.1,
        outbox_lock_timeout_s: float = 5.0,
    ):
        self._url = url
        self._pool_size = pool_size
        self._pool_timeout_s = pool_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._lock_timeout_s = lock_timeout_s
        self._outbox_lock_timeout_s = outbox_lock_timeout_s
        self._pool: asyncpg.Pool | None = None
        # The unique fields of each collection that has some.
        self._unique: Mapping[str, Sequence[str]] = {}
        # Set after each commit that added outbox messages: the relay's cue to publish.
        self.outbox_event = asyncio.Event()

    async def open(self, collections: Sequence[Collection] = ()) -> None:
        self._unique = {c.name: c.unique for c in collections if c.unique}
        try:
            self._pool = self._pool or await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout_s,
                init=_decode_json,
                reset=_reset,
                server_settings={"lock_timeout": str(int(self._lock_timeout_s * 1000))},
                # Only to a server that takes writes (PostgreSQL 14+ says at once if it does not).
                **_writable(self._url),
            )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL does not answer: {exc}") from exc
        async with self._connection() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            for name, statement in schema(POSTGRES, collections):
                # What exists is left alone: CREATE ... IF NOT EXISTS takes the table's lock
                # before it looks, and waits behind every writer (an instance started beside
                # loaded ones failed at its lock timeout, in bench-scale).
                if await db.fetchval("SELECT to_regclass($1)", name) is None:
                    try:
                        await db.execute(statement)
                    except pg_errors.InsufficientPrivilegeError as exc:
                        # A service runs as a role that may not change the schema: its
                        # owner makes it first (the project's schema step,
                        # ordermesh.deploy.databases).
                        raise StoreError(
                            f"{name} does not exist and this role may not "
                            f"create it ({exc}): create the schema as the database's owner "
                            "first (`python -m services.schema <service>`)"
                        ) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; errors that mean the server cannot work now are raised as
        StoreUnavailable, conflicts as VersionConflict."""
        if self._pool is None:
            raise RuntimeError("PostgresStore.open() was not called")
        try:
            async with self._pool.acquire(timeout=self._pool_timeout_s) as db:
                try:
                    yield db
                except UNAVAILABLE:
                    # Closed, so that the pool replaces it (if the pool has not taken it back).
                    with contextlib.suppress(pg_errors.InterfaceError):
                        db.terminate()
                    raise
                except pg_errors.InterfaceError as exc:
                    # The connection closed under a transaction (its server process ended, or
                    # the server died): leaving the transaction then raises "cannot call
                    # Transaction.__aexit__(): the underlying connection is closed" instead of
                    # the connection error. Not a bug of the caller's: the server went away.
                    if not _lost(db):
                        raise
                    raise StoreUnavailable(f"PostgreSQL connection lost: {exc}") from exc
        except CONFLICTS as exc:
            raise VersionConflict(f"a concurrent transaction: {exc}") from exc
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL cannot do it now: {exc!r}") from exc

    @asynccontextmanager
    async def _session(self, *, write: bool, atomic: bool = False) -> AsyncIterator[_Executor]:
        # A statement on its own commits on its own (it takes the row locks it needs, whether
        # it writes or not); several that must commit together share one transaction, the
        # others none (a transaction is two round trips more).
        async with self._connection() as db:
            if atomic:
                async with db.transaction():
                    yield _Executor(db)
            else:
                yield _Executor(db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        async with self._connection() as db:
            async with db.transaction():
                tx = _Transaction(
                    db, self._unique, outbox_lock_timeout_s=self._outbox_lock_timeout_s
                )
                yield tx
                if tx.outgoing:
                    await tx.flush_outbox()
            if tx.outgoing:
                self.outbox_event.set()

    def watching(self) -> AbstractAsyncContextManager[None]:
        """While entered, outbox commits of every instance set `outbox_event`: a connection of
        its own (not the pool's) listens to OUTBOX_CHANNEL, and connects again if it is lost
        (the event is set then too, for what was committed while it was not listening)."""
        return running(self._listen(), name="outbox-listener")

    async def _listen(self) -> None:
        """Listens, again after each failure, after a pause that doubles (0.1 s to 5 s) unless
        the last listen lasted: whatever goes wrong here only leaves the relay to its poll."""
        pause_s = 0.1
        while True:
            began = time.monotonic()
            try:
                db = await asyncpg.connect(self._url, timeout=self._connect_timeout_s)
                try:
                    await self._listen_on(db)
                finally:
                    db.terminate()
            except Exception as exc:  # noqa: BLE001 - unreachable, refused, cut
                log.warning("not listening for outbox commits; polling", error=repr(exc))
            pause_s = 0.1 if time.monotonic() - began > 60 else min(pause_s * 2, 5.0)
            await asyncio.sleep(pause_s)

    async def _listen_on(self, db: asyncpg.Connection) -> None:
        """Until the connection is lost (then returns)."""
        lost = asyncio.Event()
        db.add_termination_listener(lambda _: lost.set())
        await db.add_listener(OUTBOX_CHANNEL, lambda *_: self.outbox_event.set())
        self.outbox_event.set()
        await lost.wait()


def _count(status: str) -> int:
    """The row count of a command's status, e.g. "UPDATE 3" -> 3."""
    return int(status.rsplit(" ", 1)[-1])
