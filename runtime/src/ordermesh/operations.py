"""An operator's view of a service's messages, and the actions they take on those that failed:
the outbox rows its relay parked, the dead letters of its queues (ordermesh.dead_letter), and
what it did with a message (ordermesh.message_history). The operator API (ordermesh.operator_api),
the console and the command line (`python -m ordermesh.deadletters`) all act through
`Operations`; who acts is an `Operator`.

Guarantees:
- every action names who took it and why (`Operator`: a reason is required), is idempotent
  (acting again on what was already acted on counts 0, and records nothing), and is recorded,
  one document per message, in the service's audit trail (collection `operator_actions`, which
  `history` shows beside the outbox, inbox and dead letters) and in its logs;
- a replayed message carries its replays in its headers (ordermesh.dead_letter.replayed);
- a dead letter is removed from its queue only once its replay was confirmed by the broker (or
  once the operator discarded it); listing takes the messages unacknowledged and gives every
  one back, so a listing never loses or reorders what it read past (ordermesh.dead_letter.held).
- a call meant for another service is refused (`addressed`): the gateway routes by the name
  the call gives, and a service answers only for itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ordermesh.broker import Broker
from ordermesh.dead_letter import DeadLetter, held, replayed
from ordermesh.errors import InvalidArgument
from ordermesh.identity import current_caller
from ordermesh.logging import get_logger
from ordermesh.message_history import (
    Fate,
    HistoryEntry,
    audit_entry,
    dead_letter_entry,
    outbox_entries,
)
from ordermesh.store import Collection as StoreCollection
from ordermesh.store import ParkedRow, Store

# With the types its methods give (DeadLetter, HistoryEntry), where its callers find them.
__all__ = [
    "OPERATOR_ACTIONS",
    "Action",
    "DeadLetter",
    "HistoryEntry",
    "Operations",
    "Operator",
    "acting",
    "addressed",
]

log = get_logger(__name__)

# The audit trail: one document per message an operator acted on.
OPERATOR_ACTIONS = StoreCollection("operator_actions", indexed=("event_id", "correlation_id"))
# The most messages a listing or a lookup returns.
MOST = 500
# No limit: an operator's action on every parked message.
EVERY = 1_000_000_000


class Action(StrEnum):
    UNPARKED = "unparked"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class Operator:
    """Who takes an action, and why."""

    actor: str
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise InvalidArgument("reason: an operator's action needs a reason")
        if not self.actor:
            raise InvalidArgument("an operator's action needs the operator's name")


def addressed(requested: str, own: str) -> None:
    """Refuses a call meant for another service than `own`."""
    if requested != own:
        raise InvalidArgument(
            f"service: {requested!r} is not this service ({own!r}); name the service whose "
            "data you mean (REST: /v1/ops/<service>/...; gRPC: the x-ordermesh-service "
            "metadata and the service field)"
        )


def acting(reason: str) -> Operator:
    """The verified caller of the current RPC, taking an action for `reason`."""
    return Operator(actor=current_caller().user_id, reason=reason.strip())


@dataclass
class Operations:
    """The operator's view and actions over one service's outbox, inbox and dead letters."""

    service: str
    store: Store
    broker: Broker
    # The service's consumers (their inbox names) and dead-letter queues, as they are now.
    consumers: Callable[[], Sequence[str]] = field(default=lambda: ())
    dead_letter_queues: Callable[[], Sequence[str]] = field(default=lambda: ())
    instance: str = ""

    # -- the outbox

    async def parked(self, limit: int = 100) -> list[ParkedRow]:
        return await self.store.parked(limit=min(limit, MOST))

    async def unpark(self, event_ids: Collection[str] | None, by: Operator) -> int:
        """Makes these parked messages (every one if None) pending again; the relay publishes
        them. Those not parked (any more) are left alone, and not recorded."""
        if event_ids is None:
            rows = [p.row for p in await self.store.parked(limit=EVERY)]
        else:
            found = await self.store.outbox_records(event_ids=list(event_ids), limit=EVERY)
            rows = [r.row for r in found if r.parked_at is not None and r.sent_at is None]
        if not rows:
            return 0
        at = time.time()
        count = await self.store.unpark([row.message.envelope.event_id for row in rows])
        await self._record(
            Action.UNPARKED,
            by,
            [
                (row.message.envelope.event_id, row.message.envelope.correlation_id, "outbox")
                for row in rows
            ],
            at=at,
        )
        return count

    # -- dead letters

    def _queue(self, queue: str) -> str:
        if queue not in self.dead_letter_queues():
            raise InvalidArgument(
                f"queue: {queue!r} is not a dead-letter queue of {self.service} "
                f"(its are {', '.join(self.dead_letter_queues()) or 'none'})"
            )
        return queue

    async def depths(self) -> dict[str, int]:
        """Each dead-letter queue of the service, with how many messages are in it now."""
        depths = {}
        channel = await self.broker.connection.channel()
        try:
            for queue in self.dead_letter_queues():
                declared = await channel.declare_queue(queue, passive=True)
                depths[queue] = declared.declaration_result.message_count or 0
        finally:
            await channel.close()
        return depths

    async def dead_letters(self, queue: str = "", limit: int = 100) -> list[DeadLetter]:
        """The dead letters of one queue (all the service's if ""), the first `limit`."""
        letters: list[DeadLetter] = []
        for name in [self._queue(queue)] if queue else self.dead_letter_queues():
            most = min(limit, MOST) - len(letters)
            if most <= 0:
                break
            async with held(self.broker.connection, name, most=most) as messages:
                letters += [DeadLetter.of(name, message) for message in messages]
        return letters

    async def replay(self, queue: str, event_ids: Collection[str] | None, by: Operator) -> int:
        """Publishes these dead letters (all if None) again to where they were first sent, with
        their event ids, and removes each from the queue once the broker confirmed its replay."""
        queue = self._queue(queue)
        done: list[tuple[str, str, str]] = []
        at = time.time()
        try:
            async with held(self.broker.connection, queue, wanted=event_ids) as messages:
                for message in messages:
                    letter = DeadLetter.of(queue, message)
                    if event_ids is not None and letter.event_id not in event_ids:
                        continue
                    await self.broker.send(
                        replayed(message, actor=by.actor, reason=by.reason, queue=queue),
                        exchange=letter.original_exchange,
                        routing_key=letter.original_routing_key,
                    )
                    await message.ack()
                    done.append((letter.event_id, letter.correlation_id, queue))
        finally:  # what was replayed is recorded, even if a later one failed
            await self._record(Action.REPLAYED, by, done, at=at)
        return len(done)

    async def discard(self, queue: str, event_ids: Collection[str] | None, by: Operator) -> int:
        """Removes these dead letters (all if None) for good; the audit trail keeps their fate."""
        queue = self._queue(queue)
        done: list[tuple[str, str, str]] = []
        at = time.time()
        try:
            async with held(self.broker.connection, queue, wanted=event_ids) as messages:
                for message in messages:
                    letter = DeadLetter.of(queue, message)
                    if event_ids is not None and letter.event_id not in event_ids:
                        continue
                    await message.ack()
                    done.append((letter.event_id, letter.correlation_id, queue))
        finally:
            await self._record(Action.DISCARDED, by, done, at=at)
        return len(done)

    # -- the audit trail

    async def _record(
        self,
        action: Action,
        by: Operator,
        messages: Sequence[tuple[str, str, str]],
        *,
        at: float,
    ) -> None:
        """Records an action on `messages` (event id, correlation id, where), begun `at`."""
        if not messages:
            return
        async with self.store.transaction() as tx:
            for event_id, correlation_id, where in messages:
                await tx.insert(
                    OPERATOR_ACTIONS.name,
                    str(uuid.uuid4()),
                    {
                        "action": action.value,
                        "event_id": event_id,
                        "correlation_id": correlation_id,
                        "where": where,
                        "actor": by.actor,
                        "reason": by.reason,
                        "at": at,
                        "instance": self.instance,
                    },
                )
        log.info(
            f"operator {action.value} {len(messages)} message(s)",
            actor=by.actor,
            reason=by.reason,
            event_ids=[event_id for event_id, _, _ in messages],
            where=sorted({where for _, _, where in messages}),
        )

    # -- what it did with a message

    async def history(
        self, *, event_ids: Sequence[str] = (), correlation_id: str = ""
    ) -> list[HistoryEntry]:
        """What the service did with these messages, or with every message of one correlation
        id, oldest first: from its outbox, its inbox, its dead letters and its audit trail. A
        message's consumption is found by its event id: the inbox keeps no correlation ids, so
        for a correlation id, the event ids are those of the messages this service published
        with it, or that were dead-lettered with it here."""
        if not event_ids and not correlation_id:
            raise InvalidArgument("event_ids or correlation_id: say which messages")
        entries: list[HistoryEntry] = []
        records = await self.store.outbox_records(
            event_ids=event_ids, correlation_id=correlation_id, limit=MOST
        )
        entries += [entry for record in records for entry in outbox_entries(record)]
        letters = [
            letter
            for letter in await self.dead_letters(limit=MOST)
            if letter.event_id in event_ids
            or (correlation_id and letter.correlation_id == correlation_id)
        ]
        entries += [dead_letter_entry(letter) for letter in letters]
        audited: list[dict[str, Any]] = []
        async with self.store.transaction() as tx:
            for event_id in event_ids:
                audited += await tx.find(OPERATOR_ACTIONS.name, where={"event_id": event_id})
            if correlation_id:
                audited += await tx.find(
                    OPERATOR_ACTIONS.name, where={"correlation_id": correlation_id}
                )
        entries += [audit_entry(document) for document in {d["_id"]: d for d in audited}.values()]
        known = {*event_ids, *(entry.event_id for entry in entries)}
        types = {entry.event_id: entry.type for entry in entries if entry.type}
        for mark in await self.store.handled(self.consumers(), sorted(known)):
            entries.append(
                HistoryEntry(
                    at=mark.processed_at,
                    fate=Fate.PROCESSED,
                    event_id=mark.event_id,
                    type=types.get(mark.event_id, ""),
                    where=mark.consumer,
                )
            )
        return sorted(entries, key=lambda entry: entry.at)[:MOST]
