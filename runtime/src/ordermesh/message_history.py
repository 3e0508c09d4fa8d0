"""What a service did with a message, as an operator reads it (`HistoryEntry`, one `Fate` each):
the entries told by each of its records (the outbox's row, a dead letter, an operator's action
in the audit trail). ordermesh.operations gathers them (`Operations.history`).

Guarantees:
- every entry names when, which message (event id, type, correlation id), where (the outbox, a
  queue, a consumer), which instance and, for an operator's action, who took it and why;
- an outbox row tells when it was written (PENDING, with its route), published and parked (with
  the relay's reason); a dead letter when and why it failed, and where (its consumer, after how
  many attempts); a dead letter whose failure time does not parse is dated now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ordermesh.dead_letter import DeadLetter
from ordermesh.store import OutboxRecord

__all__ = ["Fate", "HistoryEntry", "audit_entry", "dead_letter_entry", "outbox_entries"]


class Fate(StrEnum):
    """What became of a message, as `history` tells it (ops.v1.MessageFate)."""

    PENDING = "PENDING"
    PUBLISHED = "PUBLISHED"
    PARKED = "PARKED"
    PROCESSED = "PROCESSED"
    DEAD_LETTERED = "DEAD_LETTERED"
    OPERATOR_ACTION = "OPERATOR_ACTION"


@dataclass(frozen=True)
class HistoryEntry:
    """One thing that happened to a message (ops.v1.MessageHistoryEntry)."""

    at: float
    fate: Fate
    event_id: str
    type: str = ""
    correlation_id: str = ""
    where: str = ""
    instance: str = ""
    actor: str = ""
    detail: str = ""


def outbox_entries(record: OutboxRecord) -> list[HistoryEntry]:
    """What an outbox row tells: written, then published or parked."""
    envelope = record.row.message.envelope
    common = {
        "event_id": envelope.event_id,
        "type": envelope.type,
        "correlation_id": envelope.correlation_id,
        "where": "outbox",
        "instance": envelope.producer,
    }
    entries = [
        HistoryEntry(
            at=envelope.occurred_at.timestamp(),
            fate=Fate.PENDING,
            detail=f"to {record.row.message.route.exchange} "
            f"{record.row.message.route.routing_key}".strip(),
            **common,
        )
    ]
    if record.sent_at is not None:
        entries.append(HistoryEntry(at=record.sent_at, fate=Fate.PUBLISHED, **common))
    if record.parked_at is not None:
        entries.append(
            HistoryEntry(
                at=record.parked_at, fate=Fate.PARKED, detail=record.parked_reason or "", **common
            )
        )
    return entries


def dead_letter_entry(letter: DeadLetter) -> HistoryEntry:
    """What a dead letter tells: when and why it failed, and where."""
    failure = letter.failure
    try:
        at = datetime.fromisoformat(failure.get("failed-at", "")).timestamp()
    except ValueError:
        at = time.time()
    return HistoryEntry(
        at=at,
        fate=Fate.DEAD_LETTERED,
        event_id=letter.event_id,
        type=letter.type,
        correlation_id=letter.correlation_id,
        where=letter.queue,
        instance=failure.get("instance", ""),
        detail=f"{failure.get('error-class', '')}: {failure.get('error-message', '')} "
        f"after {failure.get('attempts', '?')} attempt(s) in {failure.get('consumer', '?')}",
    )


def audit_entry(document: dict[str, Any]) -> HistoryEntry:
    """What an operator's action on a message tells, from its document in the audit trail
    (ordermesh.operations.OPERATOR_ACTIONS)."""
    return HistoryEntry(
        at=document["at"],
        fate=Fate.OPERATOR_ACTION,
        event_id=document["event_id"],
        correlation_id=document["correlation_id"],
        where=document["where"],
        instance=document.get("instance", ""),
        actor=document["actor"],
        detail=f"{document['action']}: {document['reason']}",
    )
