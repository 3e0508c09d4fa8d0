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

Processes sharing the file cannot signal each other through SQLite. A commit that added outbox
messages touches a file beside the store (`<file>-outbox`: its times change) once the commit
has returned, and `watching` (entered by the relay that holds the outbox lease) hears that
(inotify), so what other instances commit is published at once rather than at the relay's next
poll. Not the WAL file's writes: those come while a commit is being written, before the commit
is visible (SQLite publishes it in the shared-memory index after the WAL frames), and a read on
such a notice could miss the commit and leave it to the poll (under `make up`, 4 of 1,000
orders with 2 instances of every service, and 4 with 4, waited a second more: docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asyncinotify import Inotify, Mask

from ordermesh.logging import get_logger
from ordermesh.store import (
    Collection,
    Document,
    DuplicateKey,
    StoreUnavailable,
    VersionConflict,
    running,
)
from ordermesh.store.sql import body, table
from ordermesh.store.sql.dialect import SQLITE, schema
from ordermesh.store.sql.outbox import SqlOutbox
from ordermesh.store.sql.transaction import SqlTransaction

__all__ = ["SqliteStore"]

log = get_logger(__name__)


def _numbered(args: Sequence[Any]) -> dict[str, Any]:
    """The values of `?1`, `?2`, ... by their numbers: sqlite3 reads a numbered parameter as a
    named one, and binding names from a sequence is deprecated since Python 3.12 (an error from
    3.14)."""
    return {str(number): value for number, value in enumerate(args, 1)}


class _Executor:
    """Statements on the store's connection (they run on the loop's thread: see the module doc),
    with the numbered parameters of the shared SQL (ordermesh.store.sql.dialect)."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return self._db.execute(sql, _numbered(args)).fetchall()

    async def execute(self, sql: str, *args: Any) -> int:
        return self._db.execute(sql, _numbered(args)).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, (_numbered(row) for row in rows))


def _duplicate(exc: sqlite3.IntegrityError, collection: str) -> DuplicateKey:
    text = str(exc)
    field = re.search(r"_u_([a-z0-9_]+)'?$", text)
    what = field.group(1) if field else "_id"
    return DuplicateKey(f"{collection}: another document has the same {what}")


class _Transaction(SqlTransaction):
    """A unique field that clashes is named by SQLite's error (the index's name)."""

    def __init__(self, db: sqlite3.Connection):
        super().__init__(_Executor(db), SQLITE)
        self._db = db

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        try:
            self._db.execute(
                f"INSERT INTO {table(collection)} (id, version, doc) VALUES (?, 1, ?)",
                (id, SQLITE.encoded(body(document))),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, collection) from None
        return {**document, "_id": id, "_version": 1}

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        id, version = document["_id"], document["_version"]
        try:
            cursor = self._db.execute(
                f"UPDATE {table(collection)} SET version = version + 1, doc = ? "
                "WHERE id = ? AND version = ?",
                (SQLITE.encoded(body(document)), id, version),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, collection) from None
        if cursor.rowcount != 1:
            raise VersionConflict(f"{collection}/{id} changed since version {version} was read")
        return {**document, "_version": version + 1}


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
        self.checkpoints = 0  # checkpoints begun

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, timeout=1.0, check_same_thread=False)
        checkpointed: int | None = None  # what was committed when the WAL was last copied
        try:
            while not self._stop.wait(self._interval_s):
                # A checkpoint takes the file's locks and reads the WAL's index: when the last
                # one copied the whole WAL and nothing was committed since (an idle instance),
                # it is skipped. PRAGMA data_version changes with every other connection's
                # commit. Never read SQLite's files with an open() of our own: closing any
                # descriptor of a file drops every POSIX lock the process holds on it, the
                # store's connection's WAL locks included (measured: with the WAL index read
                # that way, 10 processes sharing a store lost committed transactions).
                committed = db.execute("PRAGMA data_version").fetchone()[0]
                if committed == checkpointed:
                    continue
                self.checkpoints += 1
                with contextlib.suppress(sqlite3.OperationalError):
                    busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    checkpointed = committed if not busy and frames == copied else None
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
                await tx.flush_outbox()
            except BaseException as error:
                await self._scope.__aexit__(type(error), error, None)
                raise
        await self._scope.__aexit__(exc_type, exc, tb)
        if exc_type is None and tx.outgoing:
            self._store._committed_outbox()


class SqliteStore(SqlOutbox):
    """The outbox, inbox and lease statements are SqlOutbox's; this class keeps the connection,
    its lock and transactions, the checkpointer and the watch."""

    dialect = SQLITE

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 10.0,
        checkpoint_interval_s: float = 1.0,
    ):
        self._path = str(path)
        # Touched after each commit that added outbox messages: the other processes' cue.
        self._notice_path = f"{self._path}-outbox"
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
        # Made only when missing (O_EXCL): closing a descriptor of a file this process has open
        # drops every POSIX lock the process holds on it (another store's, in tests).
        for path in (self._path, self._notice_path):
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        for path in (self._path, f"{self._path}-wal", f"{self._path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, 0o600)
        # isolation_level=None: transactions are begun and ended here, explicitly.
        self._db = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        # Instances starting together find the file locked while one of them turns WAL on.
        await self._execute(self._db, "PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        # Reads through a memory map and a larger page cache: no syscall per page read.
        self._db.execute("PRAGMA mmap_size = 268435456")
        self._db.execute("PRAGMA cache_size = -32768")
        async with self._locked() as db:
            # Files made before messages could be parked get the columns (NULL: not parked),
            # before the indexes that read them are made.
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            for column, kind in (("parked_at", "REAL"), ("parked_reason", "TEXT")):
                if columns and column not in columns:
                    db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
            for _, statement in schema(SQLITE, collections):
                db.execute(statement)

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

    def _committed_outbox(self) -> None:
        """Tells this process's relay, and the other processes' (through the notice file), that
        a commit added outbox messages; called once the commit has returned."""
        self.outbox_event.set()
        try:
            os.utime(self._notice_path)
        except OSError as exc:  # gone or not ours: the others' relays poll meanwhile
            log.warning("outbox notice not given", path=self._notice_path, error=str(exc))

    def watching(self) -> contextlib.AbstractAsyncContextManager[None]:
        """While entered, the commits of other processes sharing the file that added outbox
        messages set `outbox_event`, each once it is visible to this process's reads."""
        return running(self._watch(), name="outbox-watcher")

    async def _watch(self) -> None:
        try:
            with Inotify() as inotify:
                inotify.add_watch(self._notice_path, Mask.ATTRIB)
                self.outbox_event.set()  # what was committed before the watch began
                async for _ in inotify:
                    self.outbox_event.set()
        except OSError as exc:  # no inotify instance left (fs.inotify.max_user_instances)
            log.warning("cannot watch the store for other instances' commits; polling",
                        path=self._notice_path, error=str(exc))  # fmt: skip

    def _locked(self, *, write: bool = True) -> _Scope:
        """A unit of work on the raw connection, committed if the block ends normally."""
        return _Scope(self, write=write)

    @asynccontextmanager
    async def _session(self, *, write: bool, atomic: bool = False) -> AsyncIterator[_Executor]:
        # One transaction on the connection whatever `atomic` says: SQLite's are explicit here.
        async with self._locked(write=write) as db:
            yield _Executor(db)

    def transaction(self) -> _TransactionScope:
        return _TransactionScope(self)
