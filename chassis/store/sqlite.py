"""The SQLite adapter of the storage port: one file per service, WAL, one writer at a time.

Transactions begin IMMEDIATE (they take the write lock at once), so two transactions never
interleave: within a process an asyncio lock queues them; across processes sharing the file,
a transaction that finds the file locked waits asynchronously and tries again (until
`busy_timeout_s`), so the event loop never blocks on another process. Documents are JSON in a
table per collection; indexes are expression indexes on `json_extract`.

Statements run on the event loop's thread: in WAL mode with `synchronous=NORMAL` they take
microseconds and never fsync, while a hop to a worker thread per statement (aiosqlite) costs
far more once the loop is busy (measured: docs/performance.md). The fsyncs happen in WAL
checkpoints, which a background thread runs on its own connection, off the loop. A committed
transaction survives a crash of the process (SIGKILL included), not a power cut; pass
`synchronous="FULL"` for that (each commit then fsyncs on the loop).

Processes sharing the file cannot signal each other through SQLite: `watching` (entered by the
relay that holds the outbox lease) hears their commits as writes to the WAL file (inotify),
so what other instances commit is published at once rather than at the relay's next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from asyncinotify import Inotify, Mask

from chassis.events import Outgoing
from chassis.logging import get_logger
from chassis.store import (
    Collection,
    Document,
    DuplicateKey,
    OutboxRow,
    ParkedRow,
    StoreUnavailable,
    VersionConflict,
    running,
)
from chassis.store.sql import (
    OUTBOX_COLUMNS,
    OUTBOX_INSERT,
    body,
    checked,
    outbox_row,
    outbox_values,
)

__all__ = ["SqliteStore"]

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    exchange TEXT NOT NULL,
    exchange_type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    is_command INTEGER NOT NULL,
    payload BLOB NOT NULL,
    envelope TEXT NOT NULL,
    sent_at REAL,
    parked_at REAL,
    parked_reason TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox(sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at REAL NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_processed ON inbox(processed_at);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


def _table(collection: str) -> str:
    return f'"doc_{checked(collection)}"'


def _field(name: str) -> str:
    if name == "_id":
        return "id"
    return f"json_extract(doc, '$.{checked(name)}')"


def _document(id: str, version: int, raw: str) -> Document:
    return {**json.loads(raw), "_id": id, "_version": version}


def _body(document: Mapping[str, Any]) -> str:
    return json.dumps(body(document))


def _duplicate(exc: sqlite3.IntegrityError, collection: str) -> DuplicateKey:
    text = str(exc)
    field = re.search(r"_u_([a-z0-9_]+)'?$", text)
    what = field.group(1) if field else "_id"
    return DuplicateKey(f"{collection}: another document has the same {what}")


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.outgoing: list[tuple[Outgoing, str]] = []

    async def get(self, collection: str, id: str) -> Document | None:
        row = self._db.execute(
            f"SELECT id, version, doc FROM {_table(collection)} WHERE id = ?", (id,)
        ).fetchone()
        return _document(row[0], row[1], row[2]) if row else None

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        try:
            self._db.execute(
                f"INSERT INTO {_table(collection)} (id, version, doc) VALUES (?, 1, ?)",
                (id, _body(document)),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, collection) from None
        return {**document, "_id": id, "_version": 1}

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        id, version = document["_id"], document["_version"]
        try:
            cursor = self._db.execute(
                f"UPDATE {_table(collection)} SET version = version + 1, doc = ? "
                "WHERE id = ? AND version = ?",
                (_body(document), id, version),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, collection) from None
        if cursor.rowcount != 1:
            raise VersionConflict(f"{collection}/{id} changed since version {version} was read")
        return {**document, "_version": version + 1}

    async def delete(self, collection: str, id: str) -> bool:
        cursor = self._db.execute(f"DELETE FROM {_table(collection)} WHERE id = ?", (id,))
        return cursor.rowcount == 1

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
        clauses = [f"{_field(name)} = ?" for name in (where or {})]
        parameters: list[Any] = list((where or {}).values())
        order = _field(order_by)
        if after is not None:
            clauses.append(f"({order}, id) {'<' if descending else '>'} (?, ?)")
            parameters += list(after)
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT id, version, doc FROM {_table(collection)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order} {direction}, id {direction}"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [_document(*row) for row in self._db.execute(sql, parameters)]

    def publish(self, message: Outgoing, *, key: str = "") -> None:
        self.outgoing.append((message, key))

    async def first_time(self, consumer: str, event_id: str) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)",
            (consumer, event_id, time.time()),
        )
        return cursor.rowcount == 1

    def flush_outbox(self) -> None:
        self._db.executemany(
            f"INSERT INTO outbox ({OUTBOX_INSERT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [outbox_values(message, key) for message, key in self.outgoing],
        )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


# Primary result codes that say the file or the machine cannot do the work now, not that the
# statement is wrong: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
UNAVAILABLE_CODES = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def _unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable that a SQLite error stands for, if it is one."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in UNAVAILABLE_CODES:
            return StoreUnavailable(f"SQLite cannot do it now: {exc}")
    return None


class _Checkpointer:
    """Runs WAL checkpoints (and so the fsyncs) in a thread of its own, on its own connection."""

    def __init__(self, path: str, interval_s: float):
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, timeout=1.0, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s):
                with contextlib.suppress(sqlite3.OperationalError):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()


class _Scope:
    """The store's lock and one transaction on its connection: BEGIN, then COMMIT or ROLLBACK."""

    __slots__ = ("_begin", "_store")

    def __init__(self, store: SqliteStore, *, write: bool = True):
        self._store = store
        # A write transaction takes the write lock at once; a read needs no lock in WAL mode.
        self._begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    async def __aenter__(self) -> sqlite3.Connection:
        store = self._store
        if store._db is None:
            raise RuntimeError("SqliteStore.open() was not called")
        await store._lock.acquire()
        try:
            await store._execute(store._db, self._begin)
        except BaseException:
            store._lock.release()
            raise
        return store._db

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        """Commits or rolls back; an error that means the store is unavailable (from the block
        or the commit) is raised as StoreUnavailable."""
        store = self._store
        db = store._db
        assert db is not None
        try:
            if exc_type is None:
                await store._execute(db, "COMMIT")
            elif db.in_transaction:
                db.execute("ROLLBACK")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            store._lock.release()
        if exc is not None and (unavailable := _unavailable(exc)) is not None:
            raise unavailable from exc


class _TransactionScope:
    """`async with store.transaction() as tx`: a unit of work, its outbox written at commit."""

    __slots__ = ("_scope", "_store", "_tx")

    def __init__(self, store: SqliteStore):
        self._store = store
        self._scope = _Scope(store)
        self._tx: _Transaction | None = None

    async def __aenter__(self) -> _Transaction:
        self._tx = _Transaction(await self._scope.__aenter__())
        return self._tx

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        tx = self._tx
        assert tx is not None
        if exc_type is None and tx.outgoing:
            try:
                tx.flush_outbox()
            except BaseException as error:
                await self._scope.__aexit__(type(error), error, None)
                raise
        await self._scope.__aexit__(exc_type, exc, tb)
        if exc_type is None and tx.outgoing:
            self._store.outbox_event.set()


class SqliteStore:
    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 10.0,
        checkpoint_interval_s: float = 1.0,
    ):
        self._path = str(path)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._db: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        self._lock = asyncio.Lock()
        # Set after each commit that added outbox messages: the relay's cue to publish.
        self.outbox_event = asyncio.Event()

    async def open(self, collections: Sequence[Collection] = ()) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Only the service's own user may read its store (the user service's holds private
        # signing keys); SQLite gives the -wal and -shm files the same mode.
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        for path in (self._path, f"{self._path}-wal", f"{self._path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, 0o600)
        # isolation_level=None: transactions are begun and ended here, explicitly.
        self._db = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        # Reads through a memory map and a larger page cache: no syscall per page read.
        self._db.execute("PRAGMA mmap_size = 268435456")
        self._db.execute("PRAGMA cache_size = -32768")
        ddl = [statement for statement in SCHEMA.split(";") if statement.strip()]
        for collection in collections:
            table = _table(collection.name)
            ddl.append(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)"
            )
            ddl += [
                f'CREATE UNIQUE INDEX IF NOT EXISTS "doc_{collection.name}_u_{field}" '
                f"ON {table} ({_field(field)})"
                for field in collection.unique
            ]
            ddl += [
                f'CREATE INDEX IF NOT EXISTS "doc_{collection.name}_i_{field}" '
                f"ON {table} ({_field(field)}, id)"
                for field in collection.indexed
            ]
        async with self._locked() as db:
            for statement in ddl:
                db.execute(statement)
            # Files made before messages could be parked get the columns (NULL: not parked).
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            for column, kind in (("parked_at", "REAL"), ("parked_reason", "TEXT")):
                if column not in columns:
                    db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")

        self._checkpointer = _Checkpointer(self._path, self._checkpoint_interval_s)
        self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _execute(self, db: sqlite3.Connection, sql: str) -> None:
        """Runs a statement that may find the file locked by another process, waiting async."""
        delay_s = 0.001
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                db.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise _unavailable(exc) or exc from None
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.05)

    def watching(self) -> contextlib.AbstractAsyncContextManager[None]:
        """While entered, commits of other processes sharing the file set `outbox_event` (any
        commit does, whether it added outbox messages or not; so do checkpoints)."""
        return running(self._watch(), name="outbox-watcher")

    async def _watch(self) -> None:
        # A commit writes to the WAL file; the file stays while this store has it open (SQLite
        # deletes it when the last connection closes, truncates it in place otherwise).
        try:
            with Inotify() as inotify:
                inotify.add_watch(f"{self._path}-wal", Mask.MODIFY)
                self.outbox_event.set()  # what was committed before the watch began
                async for _ in inotify:
                    self.outbox_event.set()
        except OSError as exc:  # no inotify instance left (fs.inotify.max_user_instances)
            log.warning("cannot watch the store for other instances' commits; polling",
                        path=self._path, error=str(exc))  # fmt: skip

    def _locked(self, *, write: bool = True) -> _Scope:
        """A unit of work on the raw connection, committed if the block ends normally."""
        return _Scope(self, write=write)

    def transaction(self) -> _TransactionScope:
        return _TransactionScope(self)

    async def pending(self, limit: int, *, after: int = 0) -> list[OutboxRow]:
        async with self._locked(write=False) as db:
            rows = db.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox "
                "WHERE sent_at IS NULL AND parked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [outbox_row(row) for row in rows]

    async def park(self, refused: Sequence[tuple[int, str]]) -> None:
        async with self._locked() as db:
            now = time.time()
            db.executemany(
                "UPDATE outbox SET parked_at = ?, parked_reason = ? "
                "WHERE seq = ? AND sent_at IS NULL",
                [(now, reason, seq) for seq, reason in refused],
            )

    async def parked(self, limit: int = 1000) -> list[ParkedRow]:
        async with self._locked(write=False) as db:
            rows = db.execute(
                f"SELECT {OUTBOX_COLUMNS}, parked_reason, parked_at FROM outbox "
                "WHERE parked_at IS NOT NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [ParkedRow(outbox_row(row[:-2]), reason=row[-2], parked_at=row[-1]) for row in rows]

    async def unpark(self, event_ids: Iterable[str] | None = None) -> int:
        async with self._locked() as db:
            sql = "UPDATE outbox SET parked_at = NULL, parked_reason = NULL "
            if event_ids is None:
                cursor = db.execute(sql + "WHERE parked_at IS NOT NULL")
            else:
                cursor = db.executemany(
                    sql + "WHERE parked_at IS NOT NULL AND event_id = ?",
                    [(event_id,) for event_id in event_ids],
                )
            return cursor.rowcount

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        async with self._locked() as db:
            now = time.time()
            db.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?", [(now, s) for s in seqs])

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        async with self._locked() as db:
            cursor = db.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at WHERE leases.owner = excluded.owner "
                "OR leases.expires_at < ?",
                (name, owner, now + ttl_s, now),
            )
            return cursor.rowcount == 1

    async def prune(self, *, sent_before: float, handled_before: float, limit: int = 1000) -> int:
        async with self._locked() as db:
            # The newest row stays: SQLite gives a new row the highest seq + 1, and a seq must
            # never be handed out twice (the relay reads on from the highest it has seen).
            sent = db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                "WHERE sent_at IS NOT NULL AND sent_at < ? "
                "AND seq < (SELECT MAX(seq) FROM outbox) LIMIT ?)",
                (sent_before, limit),
            ).rowcount
            handled = db.execute(
                "DELETE FROM inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id "
                "FROM inbox WHERE processed_at < ? LIMIT ?)",
                (handled_before, limit),
            ).rowcount
        return int(sent + handled)

    async def count_outbox(self) -> tuple[int, int]:
        async with self._locked(write=False) as db:
            pending, sent = db.execute(
                "SELECT COUNT(*) - COUNT(sent_at) - COUNT(parked_at), COUNT(sent_at) FROM outbox"
            ).fetchone()
        return int(pending), int(sent)

    async def count_pending(self) -> int:
        async with self._locked(write=False) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL"
            ).fetchone()
        return int(count)

    async def count_inbox(self, consumer: str) -> int:
        async with self._locked(write=False) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM inbox WHERE consumer = ?", (consumer,)
            ).fetchone()
        return int(count)

    async def ping(self) -> None:
        async with self._locked(write=False) as db:
            db.execute("SELECT 1").fetchone()

    async def now(self) -> float:
        # The file is on this host: every process sharing it reads this host's clock.
        return time.time()
