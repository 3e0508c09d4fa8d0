"""An operator's view of a service's messages, and the actions they take on those that failed:
the outbox rows its relay parked, the dead letters of its queues, and what it did with a
message. The operator API (chassis.operator_api), the console and the command line
(`python -m chassis.deadletters`) all act through `Operations`.

Guarantees:
- every action names who took it and why (`Operator`: a reason is required), is idempotent
  (acting again on what was already acted on counts 0, and records nothing), and is recorded,
  one document per message, in the service's audit trail (collection `operator_actions`, which
  `history` shows beside the outbox, inbox and dead letters) and in its logs;
- a replayed message carries its replays in its headers (`x-replays`: when, who, why, from
  which queue), so that a message that fails again shows them in the dead-letter queue;
- a dead letter is removed from its queue only once its replay was confirmed by the broker (or
  once the operator discarded it); listing takes the messages unacknowledged and gives every
  one back, so a listing never loses or reorders what it read past.
- a call meant for another service is refused (`addressed`): the gateway routes by the name
  the call gives, and a service answers only for itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
from google.protobuf import descriptor_pool, json_format, message_factory

from chassis.broker import Broker
from chassis.errors import InvalidArgument
from chassis.identity import current_caller
from chassis.logging import get_logger
from chassis.store import Collection as StoreCollection
from chassis.store import OutboxRecord, ParkedRow, Store

__all__ = [
    "OPERATOR_ACTIONS",
    "Action",
    "DeadLetter",
    "Fate",
    "HistoryEntry",
    "Operations",
    "Operator",
    "acting",
    "addressed",
    "decoded",
]

log = get_logger(__name__)

# The audit trail: one document per message an operator acted on.
OPERATOR_ACTIONS = StoreCollection("operator_actions", indexed=("event_id", "correlation_id"))
# The headers a consumer writes when it gives a message up (chassis.settlement); a replay
# removes them, so that the message is tried afresh.
FAILURE_HEADERS = (
    "x-error-class",
    "x-error-message",
    "x-attempts",
    "x-consumer",
    "x-failed-at",
    "x-last-error",
    "x-instance",
)
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
REPLAYS = "x-replays"
# The most messages a listing or a lookup returns.
MOST = 500
# No limit: an operator's action on every parked message.
EVERY = 1_000_000_000


class Action(StrEnum):
    UNPARKED = "unparked"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class Fate(StrEnum):
    """What became of a message, as `history` tells it (ops.v1.MessageFate)."""

    PENDING = "PENDING"
    PUBLISHED = "PUBLISHED"
    PARKED = "PARKED"
    PROCESSED = "PROCESSED"
    DEAD_LETTERED = "DEAD_LETTERED"
    OPERATOR_ACTION = "OPERATOR_ACTION"


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


# The package of a contract's message type, e.g. "inventory.v1": the only modules a decoding
# imports (a type name comes from a message's headers, which anyone who can publish writes).
CONTRACT_PACKAGE = re.compile(r"[a-z][a-z0-9_]*\.v[0-9]+")


def _message_class(type_name: str) -> Any:
    """The generated class of a contract's message type, its package's modules imported the
    first time one of its types is asked for; KeyError if there is none."""
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
    except KeyError:
        package = type_name.rpartition(".")[0]
        if not CONTRACT_PACKAGE.fullmatch(package):
            raise
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        for module in sorted(Path(location).glob("*_pb2.py")):
            importlib.import_module(f"{package}.{module.stem}")
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))


def decoded(type_name: str, body: bytes) -> dict[str, Any] | None:
    """A message's body as JSON, from its contract; None if its type is unknown or it does not
    parse."""
    try:
        message = _message_class(type_name).FromString(body)
    except Exception:  # noqa: BLE001 - an unknown type or a bad body is shown undecoded
        return None
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    event_id: str
    type: str
    correlation_id: str
    headers: dict[str, Any]
    body: dict[str, Any] | None

    @property
    def original_exchange(self) -> str:
        return _text(self.headers.get(ORIGINAL_EXCHANGE, ""))

    @property
    def original_routing_key(self) -> str:
        return _text(self.headers.get(ORIGINAL_ROUTING_KEY, ""))

    @property
    def failure(self) -> dict[str, str]:
        """The failure headers, named without their `x-` (error-class, attempts, ...)."""
        return {
            k.removeprefix("x-"): _text(v) for k, v in self.headers.items() if k in FAILURE_HEADERS
        }

    @property
    def replays(self) -> list[dict[str, str]]:
        """Its earlier replays, oldest first: at, by, reason, queue."""
        return [
            {k: _text(v) for k, v in replay.items()}
            for replay in self.headers.get(REPLAYS) or []
            if isinstance(replay, dict)
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "event_id": self.event_id,
            "type": self.type,
            "correlation_id": self.correlation_id,
            "failure": self.failure,
            "original_route": [self.original_exchange, self.original_routing_key],
            "replays": self.replays,
            "body": self.body,
        }


def _dead_letter(queue: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    return DeadLetter(
        queue=queue,
        event_id=message.message_id or "",
        type=message.type or "",
        correlation_id=message.correlation_id or "",
        headers=dict(message.headers or {}),
        body=decoded(message.type or "", message.body),
    )


@asynccontextmanager
async def _held(
    connection: aio_pika.abc.AbstractConnection,
    queue: str,
    *,
    most: int | None = None,
    wanted: Collection[str] | None = None,
) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """The messages now in `queue` (the first `most`; with `wanted`, only until those event ids
    are all held), taken unacknowledged; those not acked go back to the queue when this ends."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count or 0
        held = []
        missing = set(wanted) if wanted is not None else None
        for _ in range(count if most is None else min(count, most)):
            message = await declared.get(fail=False)
            if message is None:
                break
            held.append(message)
            if missing is not None:
                missing.discard(message.message_id or "")
                if not missing:
                    break
        yield held
    finally:
        await channel.close()  # the broker requeues whatever was not acked


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
            async with _held(self.broker.connection, name, most=most) as held:
                letters += [_dead_letter(name, message) for message in held]
        return letters

    async def replay(self, queue: str, event_ids: Collection[str] | None, by: Operator) -> int:
        """Publishes these dead letters (all if None) again to where they were first sent, with
        their event ids, and removes each from the queue once the broker confirmed its replay."""
        queue = self._queue(queue)
        done: list[tuple[str, str, str]] = []
        at = time.time()
        try:
            async with _held(self.broker.connection, queue, wanted=event_ids) as held:
                for message in held:
                    letter = _dead_letter(queue, message)
                    if event_ids is not None and letter.event_id not in event_ids:
                        continue
                    earlier = (message.headers or {}).get(REPLAYS)
                    replays: list[Any] = [
                        *(earlier if isinstance(earlier, list) else []),
                        {
                            "at": datetime.now(UTC).isoformat(),
                            "by": by.actor,
                            "reason": by.reason,
                            "queue": queue,
                        },
                    ]
                    headers = {
                        k: v
                        for k, v in (message.headers or {}).items()
                        if k not in FAILURE_HEADERS and not k.startswith("x-original-")
                    }
                    again = aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        type=message.type,
                        timestamp=message.timestamp,
                        correlation_id=message.correlation_id,
                        content_type=message.content_type,
                        app_id=message.app_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={**headers, REPLAYS: replays},
                    )
                    await self.broker.send(
                        again,
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
            async with _held(self.broker.connection, queue, wanted=event_ids) as held:
                for message in held:
                    letter = _dead_letter(queue, message)
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
        entries += [entry for record in records for entry in _outbox_entries(record)]
        letters = [
            letter
            for letter in await self.dead_letters(limit=MOST)
            if letter.event_id in event_ids
            or (correlation_id and letter.correlation_id == correlation_id)
        ]
        entries += [_dead_letter_entry(letter) for letter in letters]
        audited: list[dict[str, Any]] = []
        async with self.store.transaction() as tx:
            for event_id in event_ids:
                audited += await tx.find(OPERATOR_ACTIONS.name, where={"event_id": event_id})
            if correlation_id:
                audited += await tx.find(
                    OPERATOR_ACTIONS.name, where={"correlation_id": correlation_id}
                )
        entries += [_audit_entry(document) for document in {d["_id"]: d for d in audited}.values()]
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


def _outbox_entries(record: OutboxRecord) -> list[HistoryEntry]:
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


def _dead_letter_entry(letter: DeadLetter) -> HistoryEntry:
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


def _audit_entry(document: dict[str, Any]) -> HistoryEntry:
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
