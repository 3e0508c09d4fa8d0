"""The relay's side of the storage port on SQL, written once: pending, sent and parked outbox
rows, leases, retention and counts.

`SqlOutbox` is the base of the SQL stores: it runs its statements on the `Executor` that the
store's `_session` gives, in the store's `dialect`. A session is the store's transaction scope:
SQLite begins one on its connection under its lock (IMMEDIATE if it writes); PostgreSQL runs
each statement on a pooled connection on its own, or in one transaction if `atomic`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager

from ordermesh.store import Handled, OutboxRecord, OutboxRow, ParkedRow
from ordermesh.store.sql import OUTBOX_COLUMNS, Executor, outbox_row
from ordermesh.store.sql.dialect import Dialect

__all__ = ["SqlOutbox"]

_UNPARK = "UPDATE outbox SET parked_at = NULL, parked_reason = NULL WHERE parked_at IS NOT NULL"


class SqlOutbox(ABC):
    """pending, mark_sent, park, parked, unpark, acquire_lease, prune, count_outbox,
    count_pending, count_inbox, ping and now, as the `Store` port says."""

    dialect: Dialect

    @abstractmethod
    def _session(
        self, *, write: bool, atomic: bool = False
    ) -> AbstractAsyncContextManager[Executor]:
        """Statements in the store's transaction scope: `write` if they change rows, `atomic` if
        several must commit together."""

    async def pending(self, limit: int, *, after: int = 0) -> list[OutboxRow]:
        async with self._session(write=False) as db:
            rows = await db.fetch(
                self.dialect.statement(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL "
                    "AND parked_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2"
                ),
                after,
                limit,
            )
        return [outbox_row(row) for row in rows]

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        d = self.dialect
        async with self._session(write=True) as db:
            await db.execute(
                d.statement(
                    f"UPDATE outbox SET sent_at = $1 WHERE {d.in_list('seq', 2, 'bigint')}"
                ),
                time.time(),
                d.list_value(seqs),
            )

    async def park(self, refused: Sequence[tuple[int, str]]) -> None:
        async with self._session(write=True) as db:
            now = time.time()
            await db.executemany(
                self.dialect.statement(
                    "UPDATE outbox SET parked_at = $1, parked_reason = $2 "
                    "WHERE seq = $3 AND sent_at IS NULL"
                ),
                [(now, reason, seq) for seq, reason in refused],
            )

    async def parked(self, limit: int = 1000) -> list[ParkedRow]:
        async with self._session(write=False) as db:
            rows = await db.fetch(
                self.dialect.statement(
                    f"SELECT {OUTBOX_COLUMNS}, parked_reason, parked_at FROM outbox "
                    "WHERE parked_at IS NOT NULL ORDER BY seq LIMIT $1"
                ),
                limit,
            )
        return [ParkedRow(outbox_row(row[:-2]), reason=row[-2], parked_at=row[-1]) for row in rows]

    async def unpark(self, event_ids: Iterable[str] | None = None) -> int:
        d = self.dialect
        async with self._session(write=True) as db:
            if event_ids is None:
                return await db.execute(_UNPARK)
            return await db.execute(
                d.statement(f"{_UNPARK} AND {d.in_list('event_id', 1, 'text')}"),
                d.list_value(list(event_ids)),
            )

    async def outbox_records(
        self, *, event_ids: Sequence[str] = (), correlation_id: str = "", limit: int = 500
    ) -> list[OutboxRecord]:
        d = self.dialect
        async with self._session(write=False) as db:
            rows = await db.fetch(
                d.statement(
                    f"SELECT {OUTBOX_COLUMNS}, sent_at, parked_at, parked_reason FROM outbox "
                    f"WHERE {d.in_list('event_id', 1, 'text')} "
                    f"OR ($2 <> '' AND {d.text_of('envelope', 'correlation_id')} = $2) "
                    "ORDER BY seq LIMIT $3"
                ),
                d.list_value(list(event_ids)),
                correlation_id,
                limit,
            )
        return [
            OutboxRecord(outbox_row(row[:-3]), sent_at=row[-3], parked_at=row[-2],
                         parked_reason=row[-1])
            for row in rows
        ]  # fmt: skip

    async def handled(self, consumers: Sequence[str], event_ids: Sequence[str]) -> list[Handled]:
        d = self.dialect
        async with self._session(write=False) as db:
            rows = await db.fetch(
                d.statement(
                    "SELECT consumer, event_id, processed_at FROM inbox "
                    f"WHERE {d.in_list('consumer', 1, 'text')} "
                    f"AND {d.in_list('event_id', 2, 'text')} ORDER BY processed_at"
                ),
                d.list_value(list(consumers)),
                d.list_value(list(event_ids)),
            )
        return [
            Handled(consumer, event_id, processed_at) for consumer, event_id, processed_at in rows
        ]

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        d = self.dialect
        now, clock = ("$4", (time.time(),)) if d.clock is None else (d.clock, ())
        async with self._session(write=True) as db:
            taken = await db.execute(
                d.statement(
                    f"INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, {now} + $3) "
                    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                    "expires_at = excluded.expires_at WHERE leases.owner = excluded.owner "
                    f"OR leases.expires_at < {now}"
                ),
                name,
                owner,
                ttl_s,
                *clock,
            )
        return taken == 1

    async def prune(self, *, sent_before: float, handled_before: float, limit: int = 1000) -> int:
        d = self.dialect
        # Dialect.reuses_highest_seq: the newest row stays, so that its seq is never reused.
        newest = " AND seq < (SELECT MAX(seq) FROM outbox)" if d.reuses_highest_seq else ""
        async with self._session(write=True, atomic=True) as db:
            sent = await db.execute(
                d.statement(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                    f"WHERE sent_at IS NOT NULL AND sent_at < $1{newest} LIMIT $2)"
                ),
                sent_before,
                limit,
            )
            handled = await db.execute(
                d.statement(
                    "DELETE FROM inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id "
                    "FROM inbox WHERE processed_at < $1 LIMIT $2)"
                ),
                handled_before,
                limit,
            )
        return sent + handled

    async def count_outbox(self) -> tuple[int, int]:
        async with self._session(write=False) as db:
            [(pending, sent)] = await db.fetch(
                "SELECT COUNT(*) - COUNT(sent_at) - COUNT(parked_at), COUNT(sent_at) FROM outbox"
            )
        return int(pending), int(sent)

    async def count_pending(self) -> int:
        async with self._session(write=False) as db:
            [(count,)] = await db.fetch(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL"
            )
        return int(count)

    async def count_inbox(self, consumer: str) -> int:
        async with self._session(write=False) as db:
            [(count,)] = await db.fetch(
                self.dialect.statement("SELECT COUNT(*) FROM inbox WHERE consumer = $1"), consumer
            )
        return int(count)

    async def ping(self) -> None:
        async with self._session(write=False) as db:
            await db.fetch("SELECT 1")

    async def now(self) -> float:
        """The store's clock: the one its leases compare (`Dialect.clock`)."""
        if self.dialect.clock is None:
            return time.time()
        async with self._session(write=False) as db:
            [(now,)] = await db.fetch(f"SELECT {self.dialect.clock}")
        return float(now)
