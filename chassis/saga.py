"""Sagas: one business transaction across services, as a list of steps, each action beside its
compensation, orchestrated by the service that owns the transaction.

Guarantees:
- a saga's state is a document in the owner's store (collection `sagas`), changed only in the
  transaction that starts it, handles a reply, times a step out or aborts it; the commands that
  change sends leave through the outbox of that same transaction, in order among themselves
  (keyed `saga:<id>`: ordered after no event of the owner's, which has its own keys).
  A crash at any point therefore resumes from the stored state: a reply not yet committed is
  redelivered (the inbox applies it once), a command committed is in the outbox;
- steps run in their declared order; a step's reply is matched by its type, and a reply that
  is not the one awaited (late, duplicate, for an ended saga) is recorded and changes nothing;
- a step that gets no reply within its timeout has failed (its deadline set and compared on
  one clock, the store's, `chassis.store.StoreClock`, by whichever instance runs the scan);
  since its command may still apply
  later, its compensation is sent too (participants make a release of nothing a no-op, and
  refuse a reservation that arrives after its release);
- after a failure (or an abort), the compensations of the steps that may have applied run in
  reverse order, one after the other, each awaiting its reply; a compensation that times out is
  sent again, because a compensation must eventually apply, up to `max_compensation_sends`
  times: then the saga is parked as needing an operator (`NEEDS_OPERATOR`, in its history and
  in `count_needing_operator`, which `maintain` notes for `make status`), never resent
  forever; a reply that arrives after that still resumes it;
- every transition is appended to the saga's history, the audit trail the owner serves, and,
  given `metrics`, measured: how sagas end and how long they and each step take (the stored
  record, its history and its measures: chassis.saga_record);
- `maintain`, the owner's upkeep beside `watch_timeouts`, keeps the count of parked sagas in
  the instance's notes and deletes compensated sagas after their retention;
- an operator's actions (chassis.saga_operations serves them: ops.v1.SagaService) act only on
  a parked saga, each in one transaction: `retry_compensation` sends the awaited compensation
  again, with a fresh count of sends and a new deadline (the saga is COMPENSATING again),
  `resolve` ends the saga COMPENSATED on the operator's word (no compensation is sent: the
  operator vouches for every one still to run). Each records who took it and why in the
  saga's history (OPERATOR_RETRIED, OPERATOR_RESOLVED; a resolve then SAGA_ENDED, measured as
  the engine measures a compensated end) and in the logs; on a saga in any other status it
  changes nothing (it is idempotent) and says so in the logs. A reply that comes after a
  resolve is recorded and ignored, as any reply not awaited.

The owner decides what a saga's end means through two callbacks, run in the transaction that
ends the saga's forward path: `on_completed` (every step succeeded) and `on_failed` (a step
failed or timed out, with the reason). Compensations continue after `on_failed`; the saga
itself ends (`SAGA_ENDED`) when the last compensation is acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import time
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chassis import saga_record, telemetry
from chassis.correlation import correlation_id
from chassis.errors import InvalidArgument, NotFound
from chassis.events import Envelope, Message, outgoing
from chassis.logging import get_logger
from chassis.metrics import SagaMetrics
from chassis.saga_record import (
    ACTIVE,
    OUTCOMES,
    SAGAS,
    HistoryKind,
    SagaStatus,
    measure,
    record,
    stored,
)
from chassis.store import Document, Store, StoreClock, Transaction, run_transaction
from chassis.watch import follow

__all__ = ["SAGAS", "HistoryKind", "Saga", "SagaDefinition", "SagaStatus", "SagaView", "Step"]

log = get_logger(__name__)

Data = Mapping[str, Any]


@dataclass(frozen=True)
class _Outcome:
    """How a saga's forward path ended: every step succeeded (failure None), or why not."""

    failure: str | None = None


@dataclass(frozen=True)
class Step:
    """One step: the command that does it, its replies, and the command that undoes it."""

    name: str
    action: Callable[[Data], Message]
    succeeded: type[Message]
    failed: type[Message]
    compensation: Callable[[Data], Message] | None = None
    # The reply to the compensation.
    compensated: type[Message] | None = None
    # Why the step failed, from its failure reply.
    reason: Callable[[Message], str] = lambda reply: type(reply).__name__
    timeout_s: float = 30.0
    # The saga's state while this step's command is out, as the history shows it.
    state: str = ""

    @property
    def state_name(self) -> str:
        return self.state or self.name.upper()


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: Sequence[Step]
    # The id of the saga a reply belongs to (e.g. the order id it carries).
    saga_id_of: Callable[[Message], str]
    on_completed: Callable[[Transaction, Data], Awaitable[None]]
    on_failed: Callable[[Transaction, Data, str], Awaitable[None]]
    producer: str = ""

    def __post_init__(self) -> None:
        for step in self.steps:
            if (step.compensation is None) != (step.compensated is None):
                raise ValueError(f"{self.name}.{step.name}: a compensation needs its reply type")

    @property
    def command_types(self) -> list[type[Message]]:
        """Every command the saga sends (its steps' actions and compensations, by the message
        type each declares it returns): what its owner publishes to the participants."""
        types: list[type[Message]] = []
        for step in self.steps:
            for make in (step.action, step.compensation):
                if make is None:
                    continue
                made = typing.get_type_hints(make).get("return")
                if not (isinstance(made, type) and issubclass(made, Message)):
                    raise TypeError(f"{self.name}.{step.name}: {make!r} declares no message type")
                types.append(made)
        return list(dict.fromkeys(types))

    @property
    def reply_types(self) -> list[type[Message]]:
        """Every reply type the saga awaits: what the owner's reply consumer must subscribe to."""
        types: list[type[Message]] = []
        for step in self.steps:
            types += [step.succeeded, step.failed]
            if step.compensated is not None:
                types.append(step.compensated)
        return list(dict.fromkeys(types))


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


def _key(saga_id: str) -> str:
    return f"saga:{saga_id}"


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
        self._metrics = metrics
        if metrics is not None:
            for outcome in OUTCOMES:  # from 0, so that the first of each shows in a rate
                metrics.ended.labels(definition.name, outcome)
        self._clock = clock
        self._scan_interval_s = timeout_scan_interval_s
        self._max_compensation_sends = max_compensation_sends

    # -- the owner's entry points --------------------------------------------------------

    async def start(self, tx: Transaction, saga_id: str, data: Data) -> None:
        """Starts a saga in the owner's transaction: its first command leaves with the commit."""
        saga: Document = {
            "definition": self.definition.name,
            "data": dict(data),
            "status": SagaStatus.RUNNING,
            "step": 0,
            "compensating": [],
            "deadline": None,
            "history": [],
            # The request that started it: the key to its messages and log lines.
            "correlation_id": correlation_id.get() or "",
            "trace_id": (telemetry.current_ids() or ("", ""))[0],
        }
        self._record(saga, HistoryKind.SAGA_STARTED, state="STARTED")
        self._send_action(tx, saga_id, saga)
        await tx.insert(SAGAS.name, saga_id, stored(saga))

    async def handle_reply(self, reply: Message, envelope: Envelope, tx: Transaction) -> None:
        """Advances the saga a participant's reply belongs to (a `chassis.consumer` handler)."""
        saga_id = self.definition.saga_id_of(reply)
        saga = await tx.get(SAGAS.name, saga_id)
        if saga is None:
            log.warning("reply for an unknown saga", saga_id=saga_id, type=envelope.type)
            return
        seen = len(saga["history"])
        outcome = self._advance(tx, saga_id, saga, reply)
        await tx.update(SAGAS.name, stored(saga))
        self._observe(saga, since=seen)
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
        if saga["status"] == SagaStatus.RUNNING:
            # The step in flight may still apply: undo it too.
            self._begin_compensation(tx, saga_id, saga, upto=saga["step"], reason=reason)
        elif saga["status"] == SagaStatus.COMPLETED:
            self._begin_compensation(
                tx, saga_id, saga, upto=len(self.definition.steps) - 1, reason=reason
            )
        else:  # already compensating: the compensations under way undo everything
            return True
        await tx.update(SAGAS.name, stored(saga))
        self._observe(saga, since=seen)
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
        steps = self.definition.steps
        if saga["status"] == SagaStatus.RUNNING:
            step = steps[saga["step"]]
            reason = f"{step.name} got no reply within {step.timeout_s:g} s"
            self._record(saga, HistoryKind.STEP_TIMED_OUT, step=step.name, detail=reason)
            self._begin_compensation(tx, saga_id, saga, upto=saga["step"], reason=reason)
            await self.definition.on_failed(tx, saga["data"], reason)
        elif saga.get("sends", 0) >= self._max_compensation_sends:
            step = steps[saga["compensating"][0]]
            detail = (
                f"compensation {step.name} got no reply to {saga.get('sends', 0)} sends; "
                "an operator must see to it"
            )
            saga.update(status=SagaStatus.NEEDS_OPERATOR, deadline=None)
            self._record(saga, HistoryKind.SAGA_PARKED, step=step.name, detail=detail)
            log.error("saga parked: it needs an operator", saga_id=saga_id, detail=detail)
        else:
            step = steps[saga["compensating"][0]]
            self._record(
                saga,
                HistoryKind.STEP_TIMED_OUT,
                step=step.name,
                detail="compensation got no reply; sending it again",
            )
            self._send_compensation(tx, saga_id, saga)
        await tx.update(SAGAS.name, stored(saga))
        self._observe(saga, since=seen)

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

    # -- an operator's view and actions (ops.v1.SagaService: chassis.saga_operations) -------

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
        if min_age_s < 0:
            raise InvalidArgument(f"min_age_seconds {min_age_s:g} is negative")
        where: dict[str, Any] = {"definition": self.definition.name}
        if status is not None:
            where["status"] = status
        found, next_token = await saga_record.read_sagas(
            store,
            where=where,
            updated_before=self._clock() - min_age_s,
            page_size=page_size,
            page_token=page_token,
        )
        return [self._view(saga) for saga in found], next_token

    async def get(self, store: Store, saga_id: str) -> SagaView:
        """One saga of this definition, with its whole history; NotFound if there is none."""
        async with store.transaction() as tx:
            return self._view(await self._operated(tx, saga_id))

    async def retry_compensation(
        self, store: Store, saga_id: str, *, actor: str, reason: str
    ) -> SagaView:
        """Sends the awaited compensation of a parked saga again (see the module doc)."""
        return await self._act(
            store, saga_id, "retry_compensation", self._retry, actor=actor, reason=reason
        )

    async def resolve(self, store: Store, saga_id: str, *, actor: str, reason: str) -> SagaView:
        """Ends a parked saga COMPENSATED on the operator's word (see the module doc)."""
        return await self._act(store, saga_id, "resolve", self._resolve, actor=actor, reason=reason)

    async def _act(
        self,
        store: Store,
        saga_id: str,
        name: str,
        action: Callable[..., None],
        *,
        actor: str,
        reason: str,
    ) -> SagaView:
        """Applies an operator's action to a parked saga in one transaction, measures and logs
        it once committed; a saga in any other status is left as it is."""

        async def act(tx: Transaction) -> tuple[Document, int, bool]:
            saga = await self._operated(tx, saga_id)
            seen = len(saga["history"])
            if saga["status"] != SagaStatus.NEEDS_OPERATOR:
                return saga, seen, False
            action(tx, saga_id, saga, actor=actor, reason=reason)
            return await tx.update(SAGAS.name, stored(saga)), seen, True

        saga, seen, changed = await run_transaction(store, act)
        if changed:
            self._observe(saga, since=seen)
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
        return self._view(saga)

    def _retry(
        self, tx: Transaction, saga_id: str, saga: Document, *, actor: str, reason: str
    ) -> None:
        saga.update(status=SagaStatus.COMPENSATING, sends=0)
        step = self.definition.steps[saga["compensating"][0]]
        self._record(saga, HistoryKind.OPERATOR_RETRIED, step=step.name, detail=reason, actor=actor)
        self._send_compensation(tx, saga_id, saga)

    def _resolve(
        self, tx: Transaction, saga_id: str, saga: Document, *, actor: str, reason: str
    ) -> None:
        awaited, *unsent = (self.definition.steps[i].name for i in saga["compensating"])
        detail = reason
        if unsent:
            detail += f" (the compensations of {', '.join(unsent)} are taken as done too)"
        saga["compensating"] = []
        self._record(
            saga,
            HistoryKind.OPERATOR_RESOLVED,
            state=SagaStatus.COMPENSATED,
            step=awaited,
            detail=detail,
            actor=actor,
        )
        self._continue_compensation(tx, saga_id, saga)  # nothing left: ends it, SAGA_ENDED

    async def _operated(self, tx: Transaction, saga_id: str) -> Document:
        """A saga of this definition, for an operator; NotFound if there is none."""
        saga = await tx.get(SAGAS.name, saga_id) if saga_id else None
        if saga is None or saga["definition"] != self.definition.name:
            raise NotFound(f"saga {saga_id!r} not found")
        return saga

    def _view(self, saga: Document) -> SagaView:
        status = SagaStatus(saga["status"])
        steps = self.definition.steps
        step = ""
        if status == SagaStatus.RUNNING:
            step = steps[saga["step"]].name
        elif (
            status in (SagaStatus.COMPENSATING, SagaStatus.NEEDS_OPERATOR) and saga["compensating"]
        ):
            step = steps[saga["compensating"][0]].name
        history = saga["history"]
        return SagaView(
            saga_id=saga["_id"],
            status=status,
            state=self._state(saga),
            step=step,
            started_at=datetime.fromisoformat(history[0]["time"]),
            updated_at=datetime.fromisoformat(history[-1]["time"]),
            failure_reason=saga.get("reason", ""),
            history=list(history),
            correlation_id=saga.get("correlation_id", ""),
            trace_id=saga.get("trace_id", ""),
        )

    # -- the state machine ---------------------------------------------------------------

    def _advance(
        self, tx: Transaction, saga_id: str, saga: Document, reply: Message
    ) -> _Outcome | None:
        """Applies a reply; returns the outcome if it ended the saga's forward path."""
        steps = self.definition.steps
        status = saga["status"]
        type_name = reply.DESCRIPTOR.full_name
        if status == SagaStatus.RUNNING:
            step = steps[saga["step"]]
            if isinstance(reply, step.succeeded):
                self._record(
                    saga, HistoryKind.REPLY_RECEIVED, step=step.name, message_type=type_name
                )
                saga["step"] += 1
                if saga["step"] < len(steps):
                    self._send_action(tx, saga_id, saga)
                    return None
                saga.update(status=SagaStatus.COMPLETED, deadline=None)
                self._record(saga, HistoryKind.SAGA_ENDED, state=SagaStatus.COMPLETED)
                return _Outcome()
            if isinstance(reply, step.failed):
                reason = step.reason(reply)
                self._record(
                    saga,
                    HistoryKind.REPLY_RECEIVED,
                    step=step.name,
                    message_type=type_name,
                    detail=reason,
                )
                # The failed step applied nothing: undo the steps before it.
                self._begin_compensation(tx, saga_id, saga, upto=saga["step"] - 1, reason=reason)
                return _Outcome(failure=reason)
        elif status in (SagaStatus.COMPENSATING, SagaStatus.NEEDS_OPERATOR):
            step = steps[saga["compensating"][0]]
            if step.compensated is not None and isinstance(reply, step.compensated):
                self._record(
                    saga, HistoryKind.REPLY_RECEIVED, step=step.name, message_type=type_name
                )
                saga.update(status=SagaStatus.COMPENSATING, sends=0)
                saga["compensating"] = saga["compensating"][1:]
                self._continue_compensation(tx, saga_id, saga)
                return None
        self._record(
            saga,
            HistoryKind.REPLY_RECEIVED,
            message_type=type_name,
            detail=f"not awaited while {self._state(saga)}: ignored",
        )
        return None

    def _begin_compensation(
        self, tx: Transaction, saga_id: str, saga: Document, *, upto: int, reason: str
    ) -> None:
        """Compensates steps `upto`, `upto - 1`, ... 0 (those that have a compensation)."""
        steps = self.definition.steps
        saga["compensating"] = [i for i in range(upto, -1, -1) if steps[i].compensation]
        saga["status"] = SagaStatus.COMPENSATING
        saga["sends"] = 0
        saga["reason"] = reason
        self._continue_compensation(tx, saga_id, saga)

    def _continue_compensation(self, tx: Transaction, saga_id: str, saga: Document) -> None:
        if saga["compensating"]:
            self._send_compensation(tx, saga_id, saga)
            return
        saga.update(status=SagaStatus.COMPENSATED, deadline=None, ended_at=self._clock())
        self._record(
            saga,
            HistoryKind.SAGA_ENDED,
            state=SagaStatus.COMPENSATED,
            detail=saga.get("reason", ""),
        )

    def _send_action(self, tx: Transaction, saga_id: str, saga: Document) -> None:
        step = self.definition.steps[saga["step"]]
        self._send(tx, saga_id, saga, step, step.action, HistoryKind.COMMAND_SENT, detail="")

    def _send_compensation(self, tx: Transaction, saga_id: str, saga: Document) -> None:
        step = self.definition.steps[saga["compensating"][0]]
        assert step.compensation is not None
        saga["sends"] = saga.get("sends", 0) + 1
        self._send(
            tx,
            saga_id,
            saga,
            step,
            step.compensation,
            HistoryKind.COMPENSATION_SENT,
            detail=saga["reason"],
        )

    def _send(
        self,
        tx: Transaction,
        saga_id: str,
        saga: Document,
        step: Step,
        build: Callable[[Data], Message],
        kind: HistoryKind,
        *,
        detail: str,
    ) -> None:
        """Sends a step's command (or compensation) with the commit, and starts its timeout."""
        command = build(saga["data"])
        tx.publish(outgoing(command, producer=self.definition.producer), key=_key(saga_id))
        saga["deadline"] = self._clock() + step.timeout_s
        self._record(
            saga, kind, step=step.name, message_type=command.DESCRIPTOR.full_name, detail=detail
        )

    def _state(self, saga: Document) -> str:
        steps = self.definition.steps
        if saga["status"] == SagaStatus.RUNNING:
            return steps[saga["step"]].state_name
        if saga["status"] == SagaStatus.COMPENSATING and saga["compensating"]:
            return f"COMPENSATING_{steps[saga['compensating'][0]].name.upper()}"
        return str(saga["status"])

    def _observe(self, saga: Document, *, since: int) -> None:
        """Measures the transitions recorded from `history[since]` on (saga_record.measure)."""
        if self._metrics is not None:
            measure(self._metrics, self.definition.name, saga["history"], since=since)

    def _record(self, saga: Document, kind: str, *, state: str = "", **details: str) -> None:
        """Appends a transition to the saga's history (saga_record.record), in the state it
        leaves the saga in unless `state` says otherwise."""
        record(
            saga,
            kind,
            saga_name=self.definition.name,
            at=self._clock(),
            state=state or self._state(saga),
            **details,
        )
