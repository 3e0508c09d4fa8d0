"""Sagas: one business transaction across services, as a list of steps, each action beside its
compensation, orchestrated by the service that owns the transaction. `Saga` is what the owner
runs and what an operator acts through; the parts it is made of:

- ordermesh.saga_definition: the saga as data (`Step`, `SagaDefinition`);
- ordermesh.saga_engine: its transitions (steps in order, timeouts, compensations in reverse, a
  saga parked when a compensation never gets its reply, an operator's retry or resolve);
- ordermesh.saga_record: the stored document, its history (the audit trail) and its measures;
- ordermesh.saga_operator: an operator's view of the sagas and actions on a parked one
  (ordermesh.saga_operations serves them: ops.v1.SagaService).

Guarantees:
- a saga's state is a document in the owner's store (collection `sagas`), changed only in the
  transaction that starts it, handles a reply, times a step out, aborts it or takes an
  operator's action; the commands that change sends leave through the outbox of that same
  transaction. A crash at any point therefore resumes from the stored state: a reply not yet
  committed is redelivered (the inbox applies it once), a command committed is in the outbox;
- a step that gets no reply within its timeout has failed, its deadline set and compared on
  one clock, the store's (`ordermesh.store.StoreClock`), by whichever instance runs the scan
  (`watch_timeouts`);
- given `metrics`, every transition is measured once its transaction committed: how sagas end
  and how long they and each step take;
- `maintain`, the owner's upkeep beside `watch_timeouts`, keeps the count of parked sagas
  (`NEEDS_OPERATOR`) in the instance's notes, for `make status`, and deletes compensated sagas
  after their retention.

The owner decides what a saga's end means through two callbacks, run in the transaction that
ends the saga's forward path: `on_completed` (every step succeeded) and `on_failed` (a step
failed or timed out, with the reason). Compensations continue after `on_failed`; the saga
itself ends (`SAGA_ENDED`) when the last compensation is acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from ordermesh import saga_operator, saga_record
from ordermesh.events import Envelope, Message
from ordermesh.logging import get_logger
from ordermesh.metrics import SagaMetrics
from ordermesh.saga_definition import Data, SagaDefinition, Step
from ordermesh.saga_engine import SagaEngine
from ordermesh.saga_operator import SagaView
from ordermesh.saga_record import ACTIVE, SAGAS, HistoryKind, SagaStatus, stored
from ordermesh.store import Store, StoreClock, Transaction, run_transaction
from ordermesh.watch import follow

# What a saga's owner and operator use, wherever it is defined.
__all__ = ["SAGAS", "HistoryKind", "Saga", "SagaDefinition", "SagaStatus", "SagaView", "Step"]

log = get_logger(__name__)


class Saga:
    """Runs the sagas of one definition over the owner's store; see the module doc."""

    def __init__(
        self,
        definition: SagaDefinition,
        *,
        clock: Callable[[], float] = time.time,
        timeout_scan_interval_s: float = 1.0,
        max_compensation_sends: int = 10,
        metrics: SagaMetrics | None = None,
    ):
        self.definition = definition
        self._engine = SagaEngine(
            definition,
            clock=clock,
            max_compensation_sends=max_compensation_sends,
            metrics=metrics,
        )
        self._clock = clock
        self._scan_interval_s = timeout_scan_interval_s

    # -- the owner's entry points --------------------------------------------------------

    async def start(self, tx: Transaction, saga_id: str, data: Data) -> None:
        """Starts a saga in the owner's transaction: its first command leaves with the commit."""
        saga = self._engine.started(tx, saga_id, data)
        await tx.insert(SAGAS.name, saga_id, stored(saga))

    async def handle_reply(self, reply: Message, envelope: Envelope, tx: Transaction) -> None:
        """Advances the saga a participant's reply belongs to (a `ordermesh.consumer` handler)."""
        saga_id = self.definition.saga_id_of(reply)
        saga = await tx.get(SAGAS.name, saga_id)
        if saga is None:
            log.warning("reply for an unknown saga", saga_id=saga_id, type=envelope.type)
            return
        seen = len(saga["history"])
        outcome = self._engine.advance(tx, saga_id, saga, reply)
        await tx.update(SAGAS.name, stored(saga))
        self._engine.observe(saga, since=seen)
        if outcome is None:
            return
        if outcome.failure is None:
            await self.definition.on_completed(tx, saga["data"])
        else:
            await self.definition.on_failed(tx, saga["data"], outcome.failure)

    async def abort(self, tx: Transaction, saga_id: str, reason: str) -> bool:
        """Undoes what the saga did (or may have done); False if there was nothing to undo."""
        saga = await tx.get(SAGAS.name, saga_id)
        if saga is None or saga["status"] == SagaStatus.COMPENSATED:
            return False
        seen = len(saga["history"])
        if not self._engine.abort(tx, saga_id, saga, reason=reason):
            return True  # already compensating: the compensations under way undo everything
        await tx.update(SAGAS.name, stored(saga))
        self._engine.observe(saga, since=seen)
        return True

    async def history(self, tx: Transaction, saga_id: str) -> list[Mapping[str, Any]]:
        saga = await tx.get(SAGAS.name, saga_id)
        return list(saga["history"]) if saga is not None else []

    # -- timeouts ------------------------------------------------------------------------

    async def watch_timeouts(self, store: Store) -> None:
        """Times out overdue steps until cancelled (run it as a background task of the owner);
        with a StoreClock, measures it against the store's before each scan."""

        async def scan() -> None:
            if isinstance(self._clock, StoreClock):
                await self._clock.sync()
            await self.expire_overdue(store)

        await follow(
            scan,
            refresh_s=self._scan_interval_s,
            name="saga-timeouts",
            failed="saga timeout scan failed; trying again",
        )

    async def expire_overdue(self, store: Store, *, limit: int = 100) -> int:
        """Times out the overdue steps of active sagas; returns how many."""
        now = self._clock()
        async with store.transaction() as tx:
            active = await tx.find(
                SAGAS.name, where={"active": True}, order_by="deadline", limit=limit
            )
        overdue = [s["_id"] for s in active if s["deadline"] is not None and s["deadline"] <= now]
        for saga_id in overdue:
            await run_transaction(store, functools.partial(self._expire, saga_id=saga_id, now=now))
        return len(overdue)

    async def _expire(self, tx: Transaction, *, saga_id: str, now: float) -> None:
        saga = await tx.get(SAGAS.name, saga_id)
        if saga is None or saga["status"] not in ACTIVE or saga["deadline"] is None:
            return
        if saga["deadline"] > now:
            return  # a reply arrived meanwhile
        seen = len(saga["history"])
        outcome = self._engine.time_out(tx, saga_id, saga)
        if outcome is not None and outcome.failure is not None:
            await self.definition.on_failed(tx, saga["data"], outcome.failure)
        await tx.update(SAGAS.name, stored(saga))
        self._engine.observe(saga, since=seen)

    # -- upkeep ----------------------------------------------------------------------------

    async def prune_ended(self, store: Store, *, before: float, limit: int = 1000) -> int:
        """Deletes up to `limit` sagas compensated before `before` (a Unix time); returns how
        many. Completed sagas stay: an approved order may still be cancelled, and its saga is
        what undoes it."""
        return await saga_record.prune_ended(store, before=before, limit=limit)

    async def count_needing_operator(self, store: Store) -> int:
        """How many sagas are parked as needing an operator."""
        return await saga_record.count_needing_operator(store)

    async def maintain(self, store: Store, *, notes: dict[str, str], retention_s: float) -> None:
        """The upkeep of the owner's sagas until cancelled (run it as a background task of the
        owner, beside `watch_timeouts`): `notes` tells how many sagas need an operator, for
        `make status`, and compensated sagas older than `retention_s` are deleted, hourly."""
        async with asyncio.TaskGroup() as upkeep:
            upkeep.create_task(saga_record.keep_noting_parked(store, notes))
            upkeep.create_task(saga_record.keep_pruning(store, retention_s=retention_s))

    # -- an operator's view and actions (ordermesh.saga_operator) -----------------------------

    async def list_sagas(
        self,
        store: Store,
        *,
        status: SagaStatus | None = None,
        min_age_s: float = 0.0,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[SagaView], str]:
        """A page of this definition's sagas in `status` (all if None) not updated for at least
        `min_age_s` (on the saga's clock), oldest update first, and the next page's token."""
        return await saga_operator.list_sagas(
            self._engine,
            store,
            status=status,
            min_age_s=min_age_s,
            page_size=page_size,
            page_token=page_token,
        )

    async def get(self, store: Store, saga_id: str) -> SagaView:
        """One saga of this definition, with its whole history; NotFound if there is none."""
        return await saga_operator.get(self._engine, store, saga_id)

    async def retry_compensation(
        self, store: Store, saga_id: str, *, actor: str, reason: str
    ) -> SagaView:
        """Sends the awaited compensation of a parked saga again (ordermesh.saga_operator)."""
        return await saga_operator.retry_compensation(
            self._engine, store, saga_id, actor=actor, reason=reason
        )

    async def resolve(self, store: Store, saga_id: str, *, actor: str, reason: str) -> SagaView:
        """Ends a parked saga COMPENSATED on the operator's word (ordermesh.saga_operator)."""
        return await saga_operator.resolve(self._engine, store, saga_id, actor=actor, reason=reason)
