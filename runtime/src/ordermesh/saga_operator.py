"""An operator's view of the sagas of one definition, and their actions on a parked one (those
that need an operator): what `Saga.list_sagas`, `get`, `retry_compensation` and `resolve`
do, and what ordermesh.saga_operations serves as ops.v1.SagaService.

Guarantees:
- a saga is shown as a `SagaView`: where it stands, the step it awaits, its failure and its
  whole history; a saga of another definition is not there (NotFound), as one that is not;
- a list is a page of the sagas in a status, oldest update first, and only those not updated
  for a given age (on the saga's clock), with the next page's token (ordermesh.saga_record);
- an action acts only on a parked saga, in one transaction: what it does to the saga is the
  engine's (ordermesh.saga_engine: a retry sends the awaited compensation again, a resolve ends
  the saga COMPENSATED on the operator's word); who took it and why is recorded in the saga's
  history and logged, and it is measured once committed. On a saga in any other status it
  changes nothing (it is idempotent) and says so in the logs. A reply that comes after a
  resolve is recorded and ignored, as any reply not awaited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ordermesh import saga_record
from ordermesh.errors import InvalidArgument, NotFound
from ordermesh.logging import get_logger
from ordermesh.saga_engine import SagaEngine
from ordermesh.saga_record import SAGAS, SagaStatus, stored
from ordermesh.store import Document, Store, Transaction, run_transaction

__all__ = ["SagaView", "get", "list_sagas", "resolve", "retry_compensation"]

log = get_logger(__name__)

# An operator's action on a parked saga: one of the engine's transitions.
Transition = Callable[..., None]


@dataclass(frozen=True)
class SagaView:
    """A saga as an operator sees it: where it stands, and its whole history (oldest first)."""

    saga_id: str
    status: SagaStatus
    # Where it is, e.g. "RESERVING_CREDIT" or "COMPENSATING_RESERVE_STOCK".
    state: str
    # The step it awaits, or whose compensation it awaits; empty when it awaits nothing.
    step: str
    # The times of its first and last history entries.
    started_at: datetime
    updated_at: datetime
    failure_reason: str
    history: Sequence[Mapping[str, Any]]
    # The request that started it (empty for sagas stored before they were kept).
    correlation_id: str = ""
    trace_id: str = ""


async def list_sagas(
    engine: SagaEngine,
    store: Store,
    *,
    status: SagaStatus | None = None,
    min_age_s: float = 0.0,
    page_size: int = 0,
    page_token: str = "",
) -> tuple[list[SagaView], str]:
    """A page of the engine's definition's sagas in `status` (all if None) not updated for at
    least `min_age_s` (on the saga's clock), oldest update first, and the next page's token."""
    if min_age_s < 0:
        raise InvalidArgument(f"min_age_seconds {min_age_s:g} is negative")
    where: dict[str, Any] = {"definition": engine.definition.name}
    if status is not None:
        where["status"] = status
    found, next_token = await saga_record.read_sagas(
        store,
        where=where,
        updated_before=engine.clock() - min_age_s,
        page_size=page_size,
        page_token=page_token,
    )
    return [_view(engine, saga) for saga in found], next_token


async def get(engine: SagaEngine, store: Store, saga_id: str) -> SagaView:
    """One saga of the engine's definition, with its whole history; NotFound if there is none."""
    async with store.transaction() as tx:
        return _view(engine, await _operated(engine, tx, saga_id))


async def retry_compensation(
    engine: SagaEngine, store: Store, saga_id: str, *, actor: str, reason: str
) -> SagaView:
    """Sends the awaited compensation of a parked saga again (see the module doc)."""
    return await _act(
        engine,
        store,
        saga_id,
        "retry_compensation",
        engine.retry_compensation,
        actor=actor,
        reason=reason,
    )


async def resolve(
    engine: SagaEngine, store: Store, saga_id: str, *, actor: str, reason: str
) -> SagaView:
    """Ends a parked saga COMPENSATED on the operator's word (see the module doc)."""
    return await _act(engine, store, saga_id, "resolve", engine.resolve, actor=actor, reason=reason)


async def _act(
    engine: SagaEngine,
    store: Store,
    saga_id: str,
    name: str,
    transition: Transition,
    *,
    actor: str,
    reason: str,
) -> SagaView:
    """Applies an operator's action to a parked saga in one transaction, measures and logs
    it once committed; a saga in any other status is left as it is."""

    async def act(tx: Transaction) -> tuple[Document, int, bool]:
        saga = await _operated(engine, tx, saga_id)
        seen = len(saga["history"])
        if saga["status"] != SagaStatus.NEEDS_OPERATOR:
            return saga, seen, False
        transition(tx, saga_id, saga, actor=actor, reason=reason)
        return await tx.update(SAGAS.name, stored(saga)), seen, True

    saga, seen, changed = await run_transaction(store, act)
    if changed:
        engine.observe(saga, since=seen)
        log.info(
            "an operator acted on a saga",
            action=name,
            saga_id=saga_id,
            actor=actor,
            reason=reason,
            status=saga["status"],
        )
    else:
        log.info(
            "an operator's action changed nothing: the saga does not need an operator",
            action=name,
            saga_id=saga_id,
            actor=actor,
            reason=reason,
            status=saga["status"],
        )
    return _view(engine, saga)


async def _operated(engine: SagaEngine, tx: Transaction, saga_id: str) -> Document:
    """A saga of the engine's definition, for an operator; NotFound if there is none."""
    saga = await tx.get(SAGAS.name, saga_id) if saga_id else None
    if saga is None or saga["definition"] != engine.definition.name:
        raise NotFound(f"saga {saga_id!r} not found")
    return saga


def _view(engine: SagaEngine, saga: Document) -> SagaView:
    """A stored saga of the engine's definition as an operator sees it."""
    status = SagaStatus(saga["status"])
    steps = engine.definition.steps
    step = ""
    if status == SagaStatus.RUNNING:
        step = steps[saga["step"]].name
    elif status in (SagaStatus.COMPENSATING, SagaStatus.NEEDS_OPERATOR) and saga["compensating"]:
        step = steps[saga["compensating"][0]].name
    history = saga["history"]
    return SagaView(
        saga_id=saga["_id"],
        status=status,
        state=engine.state(saga),
        step=step,
        started_at=datetime.fromisoformat(history[0]["time"]),
        updated_at=datetime.fromisoformat(history[-1]["time"]),
        failure_reason=saga.get("reason", ""),
        history=list(history),
        correlation_id=saga.get("correlation_id", ""),
        trace_id=saga.get("trace_id", ""),
    )
