"""A unit of work on SQL, written once: its document reads, its inbox marks and its outbox rows.

`SqlTransaction` is the base of each SQL adapter's transaction. What it leaves to the adapter
is what their databases do differently when a write breaks a unique field (`insert`, `update`),
and what must happen before the outbox rows are written (PostgreSQL's commit lock).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from ordermesh.events import Outgoing
from ordermesh.store import Document
from ordermesh.store.sql import OUTBOX_INSERT, Executor, outbox_values, table
from ordermesh.store.sql.dialect import Dialect

__all__ = ["SqlTransaction"]


class SqlTransaction(ABC):
    """The `Transaction` port on one connection's open transaction."""

    def __init__(self, db: Executor, dialect: Dialect):
        self._executor = db
        self._dialect = dialect
        self.outgoing: list[tuple[Outgoing, str]] = []

    def _document(self, row: Sequence[Any]) -> Document:
        id, version, doc = row
        return {**self._dialect.decoded(doc), "_id": id, "_version": version}

    async def get(self, collection: str, id: str) -> Document | None:
        rows = await self._executor.fetch(
            self._dialect.statement(
                f"SELECT id, version, doc FROM {table(collection)} WHERE id = $1"
            ),
            id,
        )
        return self._document(rows[0]) if rows else None

    @abstractmethod
    async def insert(self, collection: str, id: str, document: Mapping[str, Any]) -> Document:
        """Stores a new document at version 1; DuplicateKey if the id or a unique field is taken."""

    @abstractmethod
    async def update(self, collection: str, document: Mapping[str, Any]) -> Document:
        """Replaces a document read in this or an earlier transaction, if it has not changed."""

    async def delete(self, collection: str, id: str) -> bool:
        deleted = await self._executor.execute(
            self._dialect.statement(f"DELETE FROM {table(collection)} WHERE id = $1"), id
        )
        return deleted == 1

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
        d = self._dialect
        clauses: list[str] = []
        parameters: list[Any] = []
        for name, value in (where or {}).items():
            parameters.append(value)
            clauses.append(f"{d.field(name)} = {d.compared(name, len(parameters))}")
        order = d.field(order_by)
        if after is not None:
            parameters += list(after)
            n = len(parameters)
            bound = f"({d.compared(order_by, n - 1)}, {d.compared('_id', n)})"
            clauses.append(f"({order}, id) {'<' if descending else '>'} {bound}")
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT id, version, doc FROM {table(collection)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order} {direction}, id {direction}"
        if limit is not None:
            parameters.append(limit)
            sql += f" LIMIT ${len(parameters)}"
        rows = await self._executor.fetch(d.statement(sql), *parameters)
        return [self._document(row) for row in rows]

    def publish(self, message: Outgoing, *, key: str = "") -> None:
        self.outgoing.append((message, key))

    async def first_time(self, consumer: str, event_id: str) -> bool:
        # ON CONFLICT DO NOTHING: of two transactions marking the same message, the second
        # waits for the first (PostgreSQL) and finds the mark; the transaction stays usable.
        marked = await self._executor.execute(
            self._dialect.statement(
                "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING"
            ),
            consumer,
            event_id,
            time.time(),
        )
        return marked == 1

    async def flush_outbox(self) -> None:
        """Writes the published messages' outbox rows, last thing before the commit."""
        await self._executor.executemany(
            self._dialect.statement(
                f"INSERT INTO outbox ({OUTBOX_INSERT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            [outbox_values(message, key) for message, key in self.outgoing],
        )
