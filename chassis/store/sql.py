"""What the SQL adapters (SQLite, PostgreSQL) share: names, and the outbox's rows."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aio_pika

from chassis.events import Envelope, Outgoing, Route
from chassis.store import OutboxRow

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
OUTBOX_COLUMNS = (
    "seq, key, event_id, type, exchange, exchange_type, routing_key, is_command, payload, envelope"
)
# The columns an outbox row is written with (the seq is the store's).
OUTBOX_INSERT = (
    "key, event_id, type, exchange, exchange_type, routing_key, is_command, payload, envelope"
)


def checked(name: str) -> str:
    """A collection or field name, safe to put in SQL (it is never a parameter)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid collection or field name ([a-z][a-z0-9_]*)")
    return name


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


def outbox_row(row: tuple[Any, ...] | Any) -> OutboxRow:
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
