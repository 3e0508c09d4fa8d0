"""The saga engine: how a saga's stored document moves on, one transition at a time (a start, a
participant's reply, a step's timeout, an abort, an operator's action), and the commands each
transition sends. ordermesh.saga runs it in the owner's transactions; the engine itself reads
and writes no document: it changes the one it is given and publishes through the given
transaction's outbox.

Guarantees:
- steps run in their declared order; a step's reply is matched by its type, and a reply that
  is not the one awaited (late, duplicate, for an ended saga) is recorded and changes nothing;
- every command leaves through the outbox of the transition's transaction, in order among the
  saga's own (keyed `saga:<id>`: ordered after no event of the owner's, which has its own
  keys), and starts the timeout of its step (on the saga's clock);
- a step that gets no reply within its timeout has failed; since its command may still apply
  later, its compensation is sent too (participants make a release of nothing a no-op, and
  refuse a reservation that arrives after its release);
- after a failure (or an abort), the compensations of the steps that may have applied run in
  reverse order, one after the other, each awaiting its reply; a compensation that times out is
  sent again, because a compensation must eventually apply, up to `max_compensation_sends`
  times: then the saga is parked as needing an operator (`NEEDS_OPERATOR`), never resent
  forever; a reply that arrives after that still resumes it;
- an operator's action changes only a parked saga (ordermesh.saga_operator checks it):
  `retry_compensation` sends the awaited compensation again, with a fresh count of sends and a
  new deadline (COMPENSATING again); `resolve` ends the saga COMPENSATED on the operator's word,
  sending nothing (the operator vouches for every compensation still to run), and records it
  as OPERATOR_RESOLVED then SAGA_ENDED;
- every transition is appended to the saga's history with the state it leaves the saga in
  (ordermesh.saga_record.record), and measured by `observe` once it is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ordermesh import telemetry
from ordermesh.correlation import correlation_id
from ordermesh.events import Message, outgoing
from ordermesh.logging import get_logger
from ordermesh.metrics import SagaMetrics
from ordermesh.saga_definition import Data, SagaDefinition, Step
from ordermesh.saga_record import OUTCOMES, HistoryKind, SagaStatus, measure, record
from ordermesh.store import Document, Transaction

__all__ = ["Outcome", "SagaEngine"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a saga's forward path ended: every step succeeded (failure None), or why not."""

    failure: str | None = None


def _key(saga_id: str) -> str:
    return f"saga:{saga_id}"


class SagaEngine:
    """The transitions of the sagas of one definition; see the module doc."""

    def __init__(
        self,
        definition: SagaDefinition,
        *,
        clock: Callable[[], float] = time.time,
        max_compensation_sends: int = 10,
        metrics: SagaMetrics | None = None,
    ):
        self.definition = definition
        self.clock = clock
        self._metrics = metrics
        if metrics is not None:
            for outcome in OUTCOMES:  # from 0, so that the first of each shows in a rate
                metrics.ended.labels(definition.name, outcome)
        self._max_compensation_sends = max_compensation_sends

    # -- the transitions -----------------------------------------------------------------

    def started(self, tx: Transaction, saga_id: str, data: Data) -> Document:
        """A new saga, its first command sent with `tx`: the document to insert."""
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
        return saga

    def advance(
        self, tx: Transaction, saga_id: str, saga: Document, reply: Message
    ) -> Outcome | None:
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
                return Outcome()
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
                return Outcome(failure=reason)
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
            detail=f"not awaited while {self.state(saga)}: ignored",
        )
        return None

    def abort(self, tx: Transaction, saga_id: str, saga: Document, *, reason: str) -> bool:
        """Begins undoing a running or completed saga; False if it was already compensating
        (the compensations under way undo everything)."""
        if saga["status"] == SagaStatus.RUNNING:
            # The step in flight may still apply: undo it too.
            self._begin_compensation(tx, saga_id, saga, upto=saga["step"], reason=reason)
        elif saga["status"] == SagaStatus.COMPLETED:
            self._begin_compensation(
                tx, saga_id, saga, upto=len(self.definition.steps) - 1, reason=reason
            )
        else:
            return False
        return True

    def time_out(self, tx: Transaction, saga_id: str, saga: Document) -> Outcome | None:
        """Times out the step an active saga awaits (its deadline passed): a step of the
        forward path fails (the outcome says why), a compensation is sent again or, after its
        last send, the saga is parked."""
        steps = self.definition.steps
        if saga["status"] == SagaStatus.RUNNING:
            step = steps[saga["step"]]
            reason = f"{step.name} got no reply within {step.timeout_s:g} s"
            self._record(saga, HistoryKind.STEP_TIMED_OUT, step=step.name, detail=reason)
            self._begin_compensation(tx, saga_id, saga, upto=saga["step"], reason=reason)
            return Outcome(failure=reason)
        step = steps[saga["compensating"][0]]
        if saga.get("sends", 0) >= self._max_compensation_sends:
            detail = (
                f"compensation {step.name} got no reply to {saga.get('sends', 0)} sends; "
                "an operator must see to it"
            )
            saga.update(status=SagaStatus.NEEDS_OPERATOR, deadline=None)
            self._record(saga, HistoryKind.SAGA_PARKED, step=step.name, detail=detail)
            log.error("saga parked: it needs an operator", saga_id=saga_id, detail=detail)
        else:
            self._record(
                saga,
                HistoryKind.STEP_TIMED_OUT,
                step=step.name,
                detail="compensation got no reply; sending it again",
            )
            self._send_compensation(tx, saga_id, saga)
        return None

    def retry_compensation(
        self, tx: Transaction, saga_id: str, saga: Document, *, actor: str, reason: str
    ) -> None:
        """Sends a parked saga's awaited compensation again, on an operator's word."""
        saga.update(status=SagaStatus.COMPENSATING, sends=0)
        step = self.definition.steps[saga["compensating"][0]]
        self._record(saga, HistoryKind.OPERATOR_RETRIED, step=step.name, detail=reason, actor=actor)
        self._send_compensation(tx, saga_id, saga)

    def resolve(
        self, tx: Transaction, saga_id: str, saga: Document, *, actor: str, reason: str
    ) -> None:
        """Ends a parked saga COMPENSATED on an operator's word, sending nothing."""
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

    # -- where a saga stands, and its measures ---------------------------------------------

    def state(self, saga: Document) -> str:
        """Where the saga is, e.g. "RESERVING_CREDIT" or "COMPENSATING_RESERVE_STOCK"."""
        steps = self.definition.steps
        if saga["status"] == SagaStatus.RUNNING:
            return steps[saga["step"]].state_name
        if saga["status"] == SagaStatus.COMPENSATING and saga["compensating"]:
            return f"COMPENSATING_{steps[saga['compensating'][0]].name.upper()}"
        return str(saga["status"])

    def observe(self, saga: Document, *, since: int) -> None:
        """Measures the transitions recorded from `history[since]` on (saga_record.measure):
        call it once they are written."""
        if self._metrics is not None:
            measure(self._metrics, self.definition.name, saga["history"], since=since)

    # -- compensations and commands --------------------------------------------------------

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
        saga.update(status=SagaStatus.COMPENSATED, deadline=None, ended_at=self.clock())
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
        saga["deadline"] = self.clock() + step.timeout_s
        self._record(
            saga, kind, step=step.name, message_type=command.DESCRIPTOR.full_name, detail=detail
        )

    def _record(self, saga: Document, kind: str, *, state: str = "", **details: str) -> None:
        """Appends a transition to the saga's history (saga_record.record), in the state it
        leaves the saga in unless `state` says otherwise."""
        record(
            saga,
            kind,
            saga_name=self.definition.name,
            at=self.clock(),
            state=state or self.state(saga),
            **details,
        )
