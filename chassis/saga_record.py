"""A saga's record (chassis.saga runs the sagas): the document its owner stores, the history in
it that is the saga's audit trail, and what that history measures.

Guarantees:
- a saga is one document of the collection `SAGAS`; `active` (whether it awaits a reply,
  which the timeout scan looks up by index) is derived from its status as it is stored
  (`stored`), never set by hand;
- every transition is one history entry (`record`): when (an ISO time on the saga's clock),
  what (`HistoryKind`), the step, the message type and the saga's state, and the same
  transition is an event of the span at work, so that a trace shows the saga;
- `measure` counts how sagas end (`OUTCOMES`) and how long they and each step take, from the
  entries recorded since a given one: measured once they are written, never twice;
- the upkeep of the records, each loop surviving the store's outages: the sagas parked as
  needing an operator are counted into the instance's notes (`keep_noting_parked`, which
  `make status` shows), and compensated sagas are deleted after their retention
  (`keep_pruning`); completed ones stay, since an approved order may still be cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from chassis import telemetry
from chassis.logging import get_logger
from chassis.metrics import SagaMetrics
from chassis.store import Collection, Document, Store, StoreError
from chassis.watch import follow

__all__ = [
    "ACTIVE",
    "OUTCOMES",
    "SAGAS",
    "HistoryKind",
    "SagaStatus",
    "count_needing_operator",
    "keep_noting_parked",
    "keep_pruning",
    "measure",
    "prune_ended",
    "record",
    "stored",
]

log = get_logger(__name__)

SAGAS = Collection("sagas", indexed=("active", "deadline", "status", "ended_at"))


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"  # a step's command is out; awaiting its reply
    COMPENSATING = "COMPENSATING"  # a compensation is out; awaiting its reply
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    # A compensation got no reply however often it was sent: an operator must look at it.
    NEEDS_OPERATOR = "NEEDS_OPERATOR"


class HistoryKind(StrEnum):
    SAGA_STARTED = "SAGA_STARTED"
    COMMAND_SENT = "COMMAND_SENT"
    REPLY_RECEIVED = "REPLY_RECEIVED"
    STEP_TIMED_OUT = "STEP_TIMED_OUT"
    COMPENSATION_SENT = "COMPENSATION_SENT"
    SAGA_PARKED = "SAGA_PARKED"
    SAGA_ENDED = "SAGA_ENDED"


ACTIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
SENT = (HistoryKind.COMMAND_SENT, HistoryKind.COMPENSATION_SENT)
# How a saga ends, as its metrics say it.
OUTCOMES = ("completed", "compensated", "needs_operator")
# How often the upkeep counts the parked sagas, and prunes the compensated ones.
PARKED_COUNT_INTERVAL_S = 5.0
SAGA_PRUNE_INTERVAL_S = 3600.0


def stored(saga: Document) -> Document:
    """The saga as stored, with `active` derived from its status."""
    return {**saga, "active": saga["status"] in ACTIVE}


def record(
    saga: Document,
    kind: str,
    *,
    saga_name: str,
    at: float,
    state: str,
    step: str = "",
    message_type: str = "",
    detail: str = "",
) -> None:
    """Appends a transition to the saga's history, at `at` (a Unix time), and adds it to the
    span at work (the request that started the saga, or the handling of a participant's
    reply)."""
    entry = {
        "time": datetime.fromtimestamp(at, UTC).isoformat(),
        "kind": kind,
        "step": step,
        "message_type": message_type,
        "state": state,
        "detail": detail,
    }
    saga["history"].append(entry)
    attributes = {f"ordermesh.saga.{k}": v for k, v in entry.items() if v and k != "time"}
    attributes["ordermesh.saga.name"] = saga_name
    telemetry.current_span().add_event(f"saga {kind}", attributes)


def measure(
    metrics: SagaMetrics, saga_name: str, history: Sequence[Mapping[str, Any]], *, since: int
) -> None:
    """Measures the transitions recorded from `history[since]` on: called once they are
    written (a conflicting update raises before), so a transaction run again after a
    conflict is not measured twice."""
    for i in range(since, len(history)):
        entry = history[i]
        kind = entry["kind"]
        if kind == HistoryKind.REPLY_RECEIVED and entry["step"]:
            sent = next(
                (
                    e
                    for e in reversed(history[:i])
                    if e["step"] == entry["step"] and e["kind"] in SENT
                ),
                None,
            )
            if sent is not None:
                step = entry["step"]
                if sent["kind"] == HistoryKind.COMPENSATION_SENT:
                    step = f"{step}:compensation"
                metrics.step_duration.labels(saga_name, step).observe(_between(sent, entry))
        elif kind in (HistoryKind.SAGA_ENDED, HistoryKind.SAGA_PARKED):
            outcome = (
                "needs_operator" if kind == HistoryKind.SAGA_PARKED else entry["state"].lower()
            )
            metrics.ended.labels(saga_name, outcome).inc()
            metrics.duration.labels(saga_name, outcome).observe(_between(history[0], entry))


def _between(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> float:
    """Seconds between two history entries."""
    return max(
        0.0,
        (
            datetime.fromisoformat(later["time"]) - datetime.fromisoformat(earlier["time"])
        ).total_seconds(),
    )


async def prune_ended(store: Store, *, before: float, limit: int = 1000) -> int:
    """Deletes up to `limit` sagas compensated before `before` (a Unix time); returns how many."""
    async with store.transaction() as tx:
        ended = await tx.find(
            SAGAS.name,
            where={"status": SagaStatus.COMPENSATED},
            order_by="ended_at",
            after=(0, ""),
            limit=limit,
        )
        old = [saga["_id"] for saga in ended if saga["ended_at"] < before]
        for saga_id in old:
            await tx.delete(SAGAS.name, saga_id)
    return len(old)


async def count_needing_operator(store: Store) -> int:
    """How many sagas are parked as needing an operator."""
    async with store.transaction() as tx:
        parked = await tx.find(SAGAS.name, where={"status": SagaStatus.NEEDS_OPERATOR})
    return len(parked)


async def keep_noting_parked(store: Store, notes: dict[str, str]) -> None:
    """Keeps `notes` telling how many sagas need an operator, until cancelled."""

    async def note() -> None:
        try:
            parked = await count_needing_operator(store)
        except StoreError:
            log.warning("could not count the sagas needing an operator")
            return
        notes.pop("sagas_needing_operator", None)
        if parked:
            notes["sagas_needing_operator"] = str(parked)

    await follow(
        note,
        refresh_s=PARKED_COUNT_INTERVAL_S,
        name="saga-parked",
        failed="counting the sagas needing an operator failed; trying again",
    )


async def keep_pruning(store: Store, *, retention_s: float) -> None:
    """Deletes compensated sagas older than `retention_s`, hourly, until cancelled."""

    async def prune() -> None:
        try:
            while await prune_ended(store, before=time.time() - retention_s):
                pass
        except StoreError:
            log.warning("could not prune ended sagas now")

    await follow(
        prune,
        refresh_s=SAGA_PRUNE_INTERVAL_S,
        name="saga-pruning",
        failed="pruning ended sagas failed; trying again",
    )
