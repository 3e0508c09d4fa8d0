"""The SQL stores' shared part (SQLite, PostgreSQL): the schema and the documents', outbox, inbox
and lease SQL, written once.

As eventuate-common writes its message tables' SQL once (`EventuateCommonJdbcOperations`) and
lets a dialect say what each database spells differently, the statements here are written
once and run on any SQL store through two small pieces:
- an `Executor`: one connection's statements (fetch, execute with its row count, executemany),
  which each adapter implements on its driver;
- a `Dialect` (`ordermesh.store.sql.dialect`): parameters, column types, a list parameter, the
  clock leases compare, what `prune` must keep.

    ordermesh.store.sql              names, the outbox's rows, the Executor protocol
    ordermesh.store.sql.dialect      Dialect, SQLITE, POSTGRES and the schema both create
    ordermesh.store.sql.outbox       SqlOutbox: the relay's side of the port (pending ... prune)
    ordermesh.store.sql.transaction  SqlTransaction: a unit of work's reads, inbox and outbox rows

Each adapter keeps what really differs: its connections and transaction scope, its error
classification, how a duplicate is named, SQLite's checkpointer and file watch, PostgreSQL's
advisory locks and LISTEN.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import aio_pika

from ordermesh.events import Envelope, Outgoing, Route
from ordermesh.store import OutboxRow

__all__ = [
    "OUTBOX_COLUMNS",
    "OUTBOX_INSERT",
    "Executor",
    "body",
    "checked",
    "outbox_row",
    "outbox_values",
    "table",
]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
OUTBOX_COLUMNS = (
    "seq, key, event_id, type, exchange, exchange_type, routing_key, is_command, payload, envelope"
)
# The columns an outbox row is written with (the seq is the store's).
OUTBOX_INSERT = (
    "key, event_id, type, exchange, exchange_type, routing_key, is_command, payload, envelope"
)


class Executor(Protocol):
    """Statements on one connection, inside whatever transaction its adapter began. Parameters
    are numbered as the statement's dialect says (`Dialect.statement`)."""

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]:
        """The rows a query returns."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Runs a statement; returns how many rows it inserted, changed or deleted."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Runs a statement once per row of parameters."""


def checked(name: str) -> str:
    """A collection or field name, safe to put in SQL (it is never a parameter)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid collection or field name ([a-z][a-z0-9_]*)")
    return name


def table(collection: str) -> str:
    """The table of a collection's documents, quoted as SQL names it."""
    return f'"doc_{checked(collection)}"'


def body(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document's stored fields: all but the id and the version, which have columns."""
    return {k: v for k, v in document.items() if k not in ("_id", "_version")}


def outbox_values(message: Outgoing, key: str) -> tuple[Any, ...]:
    """The values of OUTBOX_INSERT for one message."""
    envelope = message.envelope
    return (
        key,
        envelope.event_id,
        envelope.type,
        message.route.exchange,
        message.route.exchange_type.value,
        message.route.routing_key,
        message.route.is_command,
        message.payload,
        json.dumps(
            {
                "occurred_at": envelope.occurred_at.isoformat(),
                "correlation_id": envelope.correlation_id,
                "causation_id": envelope.causation_id,
                "producer": envelope.producer,
                "traceparent": envelope.traceparent,
                "headers": dict(envelope.headers),
            }
        ),
    )


def outbox_row(row: Sequence[Any]) -> OutboxRow:
    """An OutboxRow from the OUTBOX_COLUMNS of a row."""
    seq, key, event_id, type, exchange, exchange_type, routing_key, is_command, payload, raw = row
    envelope = json.loads(raw)
    return OutboxRow(
        seq=seq,
        key=key,
        message=Outgoing(
            envelope=Envelope(
                event_id=event_id,
                type=type,
                occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
                correlation_id=envelope["correlation_id"],
                causation_id=envelope["causation_id"],
                producer=envelope["producer"],
                traceparent=envelope["traceparent"],
                headers=envelope["headers"],
            ),
            route=Route(
                exchange=exchange,
                exchange_type=aio_pika.ExchangeType(exchange_type),
                routing_key=routing_key,
                is_command=bool(is_command),
            ),
            payload=bytes(payload),
        ),
    )
