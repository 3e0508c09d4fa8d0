"""The SQLite adapter of the storage port: one file per service, WAL, one writer at a time.

Transactions begin IMMEDIATE (they take the write lock at once), so two transactions never
interleave: within a process an asyncio lock queues them, across processes sharing the file
SQLite's lock and busy timeout do. Documents are JSON in a table per collection; indexes are
expression indexes on `json_extract`. With `synchronous=NORMAL` (the default) a committed
transaction survives a crash of the process (SIGKILL included), not a power cut; pass
`synchronous="FULL"` for that.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiosqlite

from chassis.events import Envelope, Outgoing, Route
from chassis.store import (
    Collection,
    Document,
    DuplicateKey,
    OutboxRow,
    VersionConflict,
)

__all__ = ["SqliteStore"]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    exchange TEXT NOT NULL,
    exchange_type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    is_command INTEGER NOT NULL,
    payload BLOB NOT NULL,
    envelope TEXT NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at REAL NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


def _checked(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{name!r} is not a valid collection or field name ([a-z][a-z0-9_]*)")
    return name


def _table(collection: str) -> str:
    return f'"doc_{_checked(collection)}"'


def _field(name: str) -> str:
    if name == "_id":
        return "id"
    return f"json_extract(doc, '$.{_checked(name)}')"


def _document(id: str, version: int, raw: str) -> Document:
    return {**json.loads(raw), "_id": id, "_version": version}


def _body(document: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in document.items() if k not in ("_id", "_version")})


def _duplicate(exc: sqlite3.IntegrityError, collection: str) -> DuplicateKey:
    text = str(exc)
    field = re.search(r"_u_([a-z0-9_]+)'?$", text)
    what = field.group(1) if field else "_id"
    return DuplicateKey(f"{collection}: another document has the same {what}")


def _envelope_json(envelope: Envelope) -> str:
    return json.dumps(
        {
            "occurred_at": envelope.occurred_at.isoformat(),
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "producer": envelope.producer,
            "traceparent": envelope.traceparent,
            "headers": dict(envelope.headers),
        }
    )


def _outbox_row(row: sqlite3.Row) -> OutboxRow:
    envelope = json.loads(row["envelope"])
    return OutboxRow(
        seq=row["seq"],
        key=row["key"],
        message=Outgoing(
            envelope=Envelope(
                event_id=row["event_id"],
                type=row["type"],
                occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
                correlation_id=envelope["correlation_id"],
                causation_id=envelope["causation_id"],
                producer=envelope["producer"],
                traceparent=envelope["traceparent"],
                headers=envelope["headers"],
            ),
            route=Route(
                exchange=row["exchange"],
                exchange_type=aio_pika.ExchangeType(row["exchange_type"]),
                routing_key=row["routing_key"],
                is_command=bool(row["is_command"]),
            ),
            payload=row["payload"],
        ),
    )


class _Transaction:
    def __init__(self, db: aiosqlite.Connection):
        self._db = db
        self.outgoing: list[tuple[Outgoing, str]] = []

    async def get(self, collection: str, id: str) -> Document | None:
        async with self._db.execute(
            f"SELECT id, version, doc FROM {_table(collection)} WHERE id = ?", (id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _document(row[0], row[1], row[2]) if row else None

    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        try:
            await self._db.execute(
                f"INSERT INTO {_table(collection)} (id, version, doc) VALUES (?, 1, ?)",
                (id, _body(document)),
            )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc, collection) from None
        return {**document, "_id": id, "_version": 1}

    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        id, version = document["_id"], document["_version"]
        try:
            cursor = await self._db.execute(
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
        cursor = await self._db.execute(f"DELETE FROM {_table(collection)} WHERE id = ?", (id,))
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
        async with self._db.execute(sql, parameters) as cursor:
            return [_document(*row) async for row in cursor]

    def publish(self, message: Outgoing, *, key: str = "") -> None:
        self.outgoing.append((message, key))

    async def first_time(self, consumer: str, event_id: str) -> bool:
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)",
            (consumer, event_id, time.time()),
        )
        return cursor.rowcount == 1

    async def flush_outbox(self) -> None:
        await self._db.executemany(
            "INSERT INTO outbox (key, event_id, type, exchange, exchange_type, routing_key, "
            "is_command, payload, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    key,
                    m.envelope.event_id,
                    m.envelope.type,
                    m.route.exchange,
                    m.route.exchange_type.value,
                    m.route.routing_key,
                    int(m.route.is_command),
                    m.payload,
                    _envelope_json(m.envelope),
                )
                for m, key in self.outgoing
            ],
        )


class SqliteStore:
    def __init__(
        self, path: Path | str, *, synchronous: str = "NORMAL", busy_timeout_s: float = 10.0
    ):
        self._path = str(path)
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # Set after each commit that added outbox messages: the relay's cue to publish.
        self.outbox_event = asyncio.Event()

    async def open(self, collections: Sequence[Collection] = ()) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute(f"PRAGMA synchronous = {self._synchronous}")
        async with self._write() as db:
            await db.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
            for collection in collections:
                table = _table(collection.name)
                await db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} "
                    "(id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)"
                )
                for field in collection.unique:
                    await db.execute(
                        f'CREATE UNIQUE INDEX IF NOT EXISTS "doc_{collection.name}_u_{field}" '
                        f"ON {table} ({_field(field)})"
                    )
                for field in collection.indexed:
                    await db.execute(
                        f'CREATE INDEX IF NOT EXISTS "doc_{collection.name}_i_{field}" '
                        f"ON {table} ({_field(field)}, id)"
                    )

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._db is None:
            raise RuntimeError("SqliteStore.open() was not called")
        async with self._lock:
            yield self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        async with self._write() as db:
            await db.execute("BEGIN IMMEDIATE")
            tx = _Transaction(db)
            try:
                yield tx
                if tx.outgoing:
                    await tx.flush_outbox()
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        if tx.outgoing:
            self.outbox_event.set()

    async def pending(self, limit: int) -> list[OutboxRow]:
        async with (
            self._write() as db,
            db.execute(
                "SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ) as cursor,
        ):
            return [_outbox_row(row) async for row in cursor]

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        async with self._write() as db:
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ?", [(time.time(), s) for s in seqs]
            )
            await db.execute("COMMIT")

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at WHERE leases.owner = excluded.owner "
                "OR leases.expires_at < ?",
                (name, owner, now + ttl_s, now),
            )
            return cursor.rowcount == 1

    async def count_outbox(self) -> tuple[int, int]:
        async with (
            self._write() as db,
            db.execute("SELECT COUNT(*) - COUNT(sent_at), COUNT(sent_at) FROM outbox") as cursor,
        ):
            pending, sent = await cursor.fetchone() or (0, 0)
            return pending, sent

    async def count_inbox(self, consumer: str) -> int:
        async with (
            self._write() as db,
            db.execute("SELECT COUNT(*) FROM inbox WHERE consumer = ?", (consumer,)) as cursor,
        ):
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    async def ping(self) -> None:
        async with self._write() as db, db.execute("SELECT 1") as cursor:
            await cursor.fetchone()
