"""A dead letter as an operator sees it (`DeadLetter`: why it failed, where it was first sent,
its earlier replays, its body decoded), read off its queue without losing it (`held`), and the
message that replays it (`replayed`). ordermesh.operations lists, replays and discards them.

Guarantees:
- reading a queue takes its messages unacknowledged and gives back every one not acked when
  the reading ends, so that a listing never loses or reorders what it read past;
- a replay or discard of named messages finds them even while another reading (a listing a
  moment before, the console's) holds them: the broker gives back what a closed channel held
  a few milliseconds after the close (quorum queues), so a reading that wants named messages
  looks again for up to `SETTLE_S` before it says they are not there;
- a replay carries the message's replays in its headers (`x-replays`: when, who, why, from
  which queue), so that a message that fails again shows them in the dead-letter queue; it
  drops the failure headers (ordermesh.settlement writes them) and its original route, so that
  it is tried afresh, and keeps its event id and envelope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.abc

from ordermesh.decoding import decoded

__all__ = ["DeadLetter", "held", "replayed"]

# The headers a consumer writes when it gives a message up (ordermesh.settlement); a replay
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
# How long a reading that wants named messages looks for those out of sight. A discard right
# after a listing found 0 of the 1 it had just listed (an e2e run): the listing's channel was
# closed, and the quorum queue had not yet taken its message back.
SETTLE_S = 2.0
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
REPLAYS = "x-replays"


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

    @classmethod
    def of(cls, queue: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
        """The dead letter `message`, read from `queue`."""
        return cls(
            queue=queue,
            event_id=message.message_id or "",
            type=message.type or "",
            correlation_id=message.correlation_id or "",
            headers=dict(message.headers or {}),
            body=decoded(message.type or "", message.body),
        )

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


@asynccontextmanager
async def held(
    connection: aio_pika.abc.AbstractConnection,
    queue: str,
    *,
    most: int | None = None,
    wanted: Collection[str] | None = None,
) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """The messages now in `queue` (the first `most`; with `wanted`, only until those event ids
    are all held, looking again for up to SETTLE_S for those another reader holds), taken
    unacknowledged; those not acked go back to the queue when this ends."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        if wanted is None:
            count = declared.declaration_result.message_count or 0
            for _ in range(count if most is None else min(count, most)):
                message = await declared.get(fail=False)
                if message is None:
                    break
                messages.append(message)
        else:
            missing = set(wanted)
            deadline = time.monotonic() + SETTLE_S
            while missing:
                message = await declared.get(fail=False)
                if message is not None:
                    messages.append(message)
                    missing.discard(message.message_id or "")
                elif time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                else:
                    break
        yield messages
    finally:
        await channel.close()  # the broker requeues whatever was not acked


def replayed(
    message: aio_pika.abc.AbstractIncomingMessage, *, actor: str, reason: str, queue: str
) -> aio_pika.Message:
    """The dead letter `message`, taken from `queue`, as `actor` sends it again for `reason`:
    its envelope and body, its replays with this one, without its failure and original route."""
    earlier = (message.headers or {}).get(REPLAYS)
    replays: list[Any] = [
        *(earlier if isinstance(earlier, list) else []),
        {"at": datetime.now(UTC).isoformat(), "by": actor, "reason": reason, "queue": queue},
    ]
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in FAILURE_HEADERS and not k.startswith("x-original-")
    }
    return aio_pika.Message(
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
