"""A saga's record (ordermesh.saga runs the sagas): the document its owner stores, the history in
it that is the saga's audit trail, and what that history measures.

Guarantees:
- a saga is one document of the collection `SAGAS`; `active` (whether it awaits a reply,
  which the timeout scan looks up by index) and `updated_at` (the Unix time of its last
  history entry, by which an operator's list orders sagas, `read_sagas`) are derived from its
  status and history as it is stored (`stored`), never set by hand;
- every transition is one history entry (`record`): when (an ISO time on the saga's clock),
  what (`HistoryKind`), the step, the message type, the saga's state and, for an operator's
  action, who took it (`actor`; the why is its `detail`), and the same transition is an event
  of the span at work, so that a trace shows the saga;
- `measure` counts how sagas end (`OUTCOMES`) and how long they and each step take, from the
  entries recorded since a given one: measured once they are written, never twice;
- the upkeep of the records, each loop surviving the store's outages: the sagas parked as
  needing an operator are counted into the instance's notes (`keep_noting_parked`, which
  `make status` shows; first it dates the parked sagas stored before `updated_at` was, so
  that an operator's list finds them), and compensated sagas are deleted after their
  retention (`keep_pruning`); completed ones stay, since an approved order may still be
  cancelled.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ordermesh import pages, telemetry
from ordermesh.logging import get_logger
from ordermesh.metrics import SagaMetrics
from ordermesh.store import Collection, Document, Store, StoreError, Transaction, run_transaction
from ordermesh.watch import follow

__all__ = [
    "ACTIVE",
    "OUTCOMES",
    "SAGAS",
    "HistoryKind",
    "SagaStatus",
    "count_needing_operator",
    "date_parked",
    "keep_noting_parked",
    "keep_pruning",
    "measure",
    "prune_ended",
    "read_sagas",
    "record",
    "stored",
    "time_of",
]

log = get_logger(__name__)

SAGAS = Collection("sagas", indexed=("active", "deadline", "status", "ended_at", "updated_at"))


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
    # An operator sent the awaited compensation of a parked saga again (detail: why).
    OPERATOR_RETRIED = "OPERATOR_RETRIED"
    # An operator ended a parked saga as compensated on their word (detail: why).
    OPERATOR_RESOLVED = "OPERATOR_RESOLVED"


ACTIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
SENT = (HistoryKind.COMMAND_SENT, HistoryKind.COMPENSATION_SENT)
# How a saga ends, as its metrics say it.
OUTCOMES = ("completed", "compensated", "needs_operator")
# How often the upkeep counts the parked sagas, and prunes the compensated ones.
PARKED_COUNT_INTERVAL_S = 5.0
SAGA_PRUNE_INTERVAL_S = 3600.0


def stored(saga: Document) -> Document:
    """The saga as stored, with `active` derived from its status and `updated_at` from its
    last history entry."""
    return {
        **saga,
        "active": saga["status"] in ACTIVE,
        "updated_at": time_of(saga["history"][-1]),
    }


def time_of(entry: Mapping[str, Any]) -> float:
    """When a history entry was recorded, as a Unix time."""
    return datetime.fromisoformat(entry["time"]).timestamp()


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
    actor: str = "",
) -> None:
    """Appends a transition to the saga's history, at `at` (a Unix time), and adds it to the
    span at work (the request that started the saga, the handling of a participant's reply,
    or an operator's call). `actor`: who took an operator's action (their user id)."""
    entry = {
        "time": datetime.fromtimestamp(at, UTC).isoformat(),
        "kind": kind,
        "step": step,
        "message_type": message_type,
        "state": state,
        "detail": detail,
        "actor": actor,
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
    return max(0.0, time_of(later) - time_of(earlier))


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


async def read_sagas(
    store: Store,
    *,
    where: Mapping[str, Any],
    updated_before: float,
    page_size: int,
    page_token: str,
) -> tuple[list[Document], str]:
    """A page of the sagas whose fields equal `where` and that were last updated at or before
    `updated_before` (a Unix time), oldest update first, and the token of the next page (empty
    after the last; ordermesh.pages). A saga that changes between two pages moves in the order:
    it may be listed twice, or missed. Sagas stored before `updated_at` was, and not changed
    since, are not listed (the upkeep dates the parked ones: `date_parked`)."""
    size = pages.size_of(page_size)
    async with store.transaction() as tx:
        found = await tx.find(
            SAGAS.name,
            where=where,
            order_by="updated_at",
            # After (0, ""): every dated saga. An undated one, which each store would order
            # differently (its updated_at is missing), compares with nothing: left out.
            after=pages.after_of(page_token) or (0, ""),
            limit=size + 1,
        )
    # Oldest first: the sagas old enough are the first ones.
    aged = list(itertools.takewhile(lambda saga: saga["updated_at"] <= updated_before, found))
    return aged[:size], pages.next_token(aged, size=size, order_by="updated_at")


async def date_parked(store: Store) -> int:
    """Gives the parked sagas stored before `updated_at` was their `updated_at` (`stored`), so
    that an operator's list finds them; returns how many it dated."""

    async def date(tx: Transaction) -> int:
        parked = await tx.find(SAGAS.name, where={"status": SagaStatus.NEEDS_OPERATOR})
        undated = [saga for saga in parked if "updated_at" not in saga]
        for saga in undated:
            await tx.update(SAGAS.name, stored(saga))
        return len(undated)

    return await run_transaction(store, date)


async def count_needing_operator(store: Store) -> int:
    """How many sagas are parked as needing an operator."""
    async with store.transaction() as tx:
        parked = await tx.find(SAGAS.name, where={"status": SagaStatus.NEEDS_OPERATOR})
    return len(parked)


async def keep_noting_parked(store: Store, notes: dict[str, str]) -> None:
    """Keeps `notes` telling how many sagas need an operator, until cancelled; dates the parked
    sagas stored before `updated_at` was, once (`date_parked`)."""
    dated = False

    async def note() -> None:
        nonlocal dated
        try:
            if not dated:
                if await date_parked(store):
                    log.info("dated the parked sagas stored by an earlier version")
                dated = True
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
