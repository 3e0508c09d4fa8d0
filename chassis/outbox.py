"""The outbox relay: publishes what transactions committed to the outbox, until it is confirmed.

Guarantees, given a transaction that wrote state and messages together (`Transaction.publish`):
- nothing committed is lost: a message leaves the outbox (is marked sent) only after the broker
  confirmed it; a crash before that leaves it pending, and it is published again after restart;
- nothing uncommitted is published: the relay reads only committed rows;
- order per key: messages with the same key (an aggregate id) are published one after the
  other, each only once the previous one is confirmed; a wave of publishes holds at most one
  message per key, so a failure never lets a later message of that key overtake it;
- one relay per store at a time: instances of a service share its store, and only the holder
  of the store's `outbox` lease publishes.

A crash between the broker's confirm and the mark publishes the message again: duplicates are
possible, losses are not; consumers recognise duplicates by event id (the inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from chassis.broker import Broker
from chassis.ledger import Ledger
from chassis.logging import get_logger
from chassis.store import OutboxRow, Store

__all__ = ["OutboxRelay"]

log = get_logger(__name__)


def next_wave(rows: list[OutboxRow]) -> list[OutboxRow]:
    """The oldest pending message of each key (and every message without a key)."""
    seen: set[str] = set()
    wave = []
    for row in rows:
        if row.key and row.key in seen:
            continue
        seen.add(row.key)
        wave.append(row)
    return wave


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        *,
        owner: str,
        ledger: Ledger | None = None,
        batch: int = 256,
        poll_interval_s: float = 1.0,
        lease_ttl_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ):
        self._store = store
        self._broker = broker
        self._owner = owner
        self._ledger = ledger or Ledger()
        self._batch = batch
        self._poll_interval_s = poll_interval_s
        self._lease_ttl_s = lease_ttl_s
        self._lease_until = 0.0
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self._owner}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Relays until cancelled; failures are logged and retried with backoff."""
        backoff_s = 0.05
        while True:
            try:
                if not await self._hold_lease():
                    await asyncio.sleep(self._lease_ttl_s / 3)
                    continue
                published, failed = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                published, failed = 0, 1
            if failed:
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
                continue
            backoff_s = 0.05
            if published == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._store.outbox_event.wait(), self._poll_interval_s)

    async def relay_once(self) -> tuple[int, int]:
        """Publishes one wave of pending messages; returns how many were confirmed and failed."""
        self._store.outbox_event.clear()
        rows = await self._store.pending(self._batch)
        if not rows:
            return 0, 0
        wave = next_wave(rows)
        results = await asyncio.gather(
            *(self._broker.publish(row.message) for row in wave), return_exceptions=True
        )
        confirmed = [row for row, result in zip(wave, results, strict=True) if result is None]
        if confirmed:
            await self._store.mark_sent([row.seq for row in confirmed])
            for row in confirmed:
                self._ledger.record(row.message.envelope.type, "published")
        failures = [(row, r) for row, r in zip(wave, results, strict=True) if r is not None]
        for row, error in failures[:5]:
            log.warning(
                "publish failed; the message stays in the outbox",
                type=row.message.envelope.type,
                event_id=row.message.envelope.event_id,
                error=str(error),
            )
        return len(confirmed), len(failures)

    async def _hold_lease(self) -> bool:
        now = time.monotonic()
        if now < self._lease_until - self._lease_ttl_s / 2:
            return True
        if await self._store.acquire_lease("outbox", self._owner, self._lease_ttl_s):
            self._lease_until = now + self._lease_ttl_s
            return True
        return False
