"""The outbox relay: publishes what transactions committed to the outbox, until it is confirmed.

Guarantees, given a transaction that wrote state and messages together (`Transaction.publish`):
- nothing committed is lost: a message leaves the outbox (is marked sent) only after the broker
  confirmed it; a crash before that leaves it pending, and it is published again after restart;
- nothing uncommitted is published: the relay reads only committed rows;
- order per key: messages with the same key (an aggregate id) are published one after the
  other, each only once the previous one is confirmed, so a failure never lets a later message
  of that key overtake it; messages of different keys (and without a key) go concurrently;
- one relay per store at a time: instances of a service share its store, and only the holder
  of the store's `outbox` lease publishes; while it holds the lease it watches the store
  (`Store.watching`), so what the other instances commit goes out as soon as the store tells,
  not at the next poll. The others ask for the lease every `poll_interval_s` (1 s): when its
  holder dies without giving it back, one takes over within a second of its expiry (the TTL,
  10 s; at most 10 s after the last renewal). Before, they asked every third of the TTL (3.3 s),
  which after a container's kill held the service's messages for up to 13 s (issue 29);
- no message can stop the relay: one the broker refuses as it is (`ordermesh.broker.Refused`) is
  parked in the outbox with the reason (visible and replayable with `python -m
  ordermesh.deadletters parked|unpark`), and the relay goes on with the rest, later messages of
  its key included. A broker's refusal fails every publish in flight on the channel, so a
  message refused among others is published again alone, and parked only if refused alone.

The relay is a pipeline: it starts publishing a message as soon as it is committed and its key
is free, without waiting for the confirms of what is already in flight (at most `batch` at a
time), and marks confirmed messages sent in batches. A crash between the broker's confirm and
the mark publishes the message again: duplicates are possible, losses are not; consumers
recognise duplicates by event id (the inbox).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractContextManager

from ordermesh import telemetry
from ordermesh.broker import Broker, Refused
from ordermesh.events import Outgoing
from ordermesh.lease import Lease
from ordermesh.ledger import Ledger, Stage
from ordermesh.logging import get_logger
from ordermesh.store import OutboxRow, Store

__all__ = ["OutboxRelay"]

log = get_logger(__name__)

# Confirmed messages are marked sent in one transaction per this many (or when none is in
# flight): the mark only spares a re-publish after a crash, so it need not be immediate.
MARK_BATCH = 64


def _publish_span(message: Outgoing) -> AbstractContextManager[telemetry.Span]:
    """The PRODUCER span of a message's publication, in the trace of the work that committed
    it (the context stored with its row): the consumers' spans are its children."""
    envelope, route = message.envelope, message.route
    return telemetry.tracer.start_as_current_span(
        f"publish {route.exchange}",
        context=telemetry.extract({"traceparent": envelope.traceparent}),
        kind=telemetry.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": route.exchange,
            "messaging.rabbitmq.destination.routing_key": route.routing_key,
            "messaging.message.id": envelope.event_id,
            "messaging.message.conversation_id": envelope.correlation_id,
            "ordermesh.message.type": envelope.type,
        },
    )


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
        self._lease = Lease(store, "outbox", owner=owner, ttl_s=lease_ttl_s)
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        # Open (the store watched) while this relay holds the lease.
        self._watch = contextlib.AsyncExitStack()
        self._watching = False
        # Rows read and waiting to be published, by seq (in seq order); those being published,
        # and their keys; those confirmed and not yet marked sent; the highest seq read.
        self._waiting: dict[int, OutboxRow] = {}
        self._publishing: dict[int, asyncio.Task[None]] = {}
        self._busy_keys: set[str] = set()
        self._confirmed: list[OutboxRow] = []
        self._failures: list[tuple[OutboxRow, BaseException]] = []
        # Rows the broker refused while others were in flight (each is published again alone),
        # the one being published alone, and those refused for certain, to park with the reason.
        self._suspects: set[int] = set()
        self._alone: int | None = None
        self._refused: list[tuple[OutboxRow, str]] = []
        self._read_upto = 0
        # Read the outbox at the next turn even if nothing was committed in this process (at
        # start, when a read was cut short by `batch`, after a quiet poll interval).
        self._must_read = True
        self._settled = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self._owner}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for publishing in self._publishing.values():
            publishing.cancel()
        await asyncio.gather(*self._publishing.values(), return_exceptions=True)
        self._publishing.clear()
        await self._watch_store(False)

    async def _watch_store(self, holder: bool) -> None:
        if holder and not self._watching:
            await self._watch.enter_async_context(self._store.watching())
        elif self._watching and not holder:
            await self._watch.aclose()
        self._watching = holder

    async def run(self) -> None:
        """Relays until cancelled; failures are logged and retried with backoff."""
        backoff_s = 0.05
        while True:
            failed = False
            try:
                holder = await self._lease.held()
                await self._watch_store(holder)
                if not holder:
                    await asyncio.sleep(self._poll_interval_s)
                    continue
                started = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                failed, started = True, 0
            if self._failures:
                self._report_failures()
                failed = True
            if failed:
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
                continue
            backoff_s = 0.05
            if started == 0:
                await self._wait_for_work()

    async def relay_once(self) -> int:
        """Marks what was confirmed (in batches), reads what was committed, starts what may go;
        returns how many publishes it started."""
        # A notice of a commit is kept (as `_must_read`) until a read happens: with no room for
        # a read now, the next turn's must not miss what it announced.
        if self._store.outbox_event.is_set():
            self._must_read = True
        self._store.outbox_event.clear()
        self._settled.clear()
        if self._refused:
            await self._park()
        if len(self._confirmed) >= MARK_BATCH or (self._confirmed and not self._publishing):
            confirmed, self._confirmed = self._confirmed, []
            await self._store.mark_sent([row.seq for row in confirmed])
            for row in confirmed:
                self._ledger.record(row.message.envelope.type, Stage.PUBLISHED)
        room = self._batch - len(self._waiting) - len(self._publishing)
        if room > 0 and self._must_read:
            self._must_read = False
            rows = await self._store.pending(room, after=self._read_upto)
            for row in rows:
                self._waiting[row.seq] = row
                self._read_upto = max(self._read_upto, row.seq)
            # A full read may have left rows behind: read on at the next turn.
            self._must_read = len(rows) == room
        return self._start_ready()

    async def drain(self) -> None:
        """Publishes until the outbox is empty; raises on the first failure (a one-off run)."""
        while True:
            await self.relay_once()
            if self._failures:
                error = self._failures[0][1]
                self._report_failures()
                raise RuntimeError(f"outbox relay could not publish: {error}")
            if self._publishing:
                await self._settled.wait()
            elif (
                not (self._confirmed or self._refused) and not (await self._store.count_outbox())[0]
            ):
                return
            else:
                self._must_read = True

    def _start_ready(self) -> int:
        """Publishes each waiting row whose key has no earlier row still unconfirmed; a suspect
        goes first, alone, once nothing else is in flight."""
        if self._alone is not None:
            return 0
        suspect = next((row for row in self._waiting.values() if row.seq in self._suspects), None)
        if suspect is not None:
            if self._publishing:
                return 0
            del self._waiting[suspect.seq]
            self._alone = suspect.seq
            self._busy_keys.add(suspect.key)
            self._publishing[suspect.seq] = asyncio.create_task(self._publish(suspect))
            return 1
        blocked = set(self._busy_keys)
        ready = []
        for row in self._waiting.values():
            if row.key:
                if row.key in blocked:
                    continue
                blocked.add(row.key)
            ready.append(row)
        for row in ready:
            del self._waiting[row.seq]
            if row.key:
                self._busy_keys.add(row.key)
            self._publishing[row.seq] = asyncio.create_task(self._publish(row))
        return len(ready)

    async def _publish(self, row: OutboxRow) -> None:
        alone = self._alone == row.seq
        try:
            with _publish_span(row.message):
                await self._broker.publish(row.message)
        except Refused as exc:
            if exc.certain or alone:
                self._suspects.discard(row.seq)
                self._refused.append((row, str(exc)))
            else:  # it, or another message in flight, was refused: try it alone
                self._suspects.add(row.seq)
                self._wait_again(row)
        except Exception as exc:  # noqa: BLE001 - the row waits again, in its place
            self._failures.append((row, exc))
            self._wait_again(row)
        else:
            self._suspects.discard(row.seq)
            self._confirmed.append(row)
        finally:
            del self._publishing[row.seq]
            self._busy_keys.discard(row.key)
            if alone:
                self._alone = None
            self._settled.set()

    def _wait_again(self, row: OutboxRow) -> None:
        self._waiting = dict(sorted({**self._waiting, row.seq: row}.items()))

    async def _park(self) -> None:
        """Parks the rows refused for certain (kept to try again at the next turn if the store
        fails)."""
        await self._store.park([(row.seq, reason) for row, reason in self._refused])
        refused, self._refused = self._refused, []
        for row, reason in refused:
            self._ledger.record(row.message.envelope.type, Stage.PARKED)
            log.error(
                "message parked in the outbox: the broker refuses it as it is",
                type=row.message.envelope.type,
                event_id=row.message.envelope.event_id,
                reason=reason,
            )

    def _report_failures(self) -> None:
        failures, self._failures = self._failures, []
        for row, error in failures[:5]:
            log.warning(
                "publish failed; the message stays in the outbox",
                type=row.message.envelope.type,
                event_id=row.message.envelope.event_id,
                error=str(error),
            )

    async def _wait_for_work(self) -> None:
        """Until something is committed, a publish settles, or the poll interval passes (then
        the whole outbox is read again, in case a row was committed out of seq order)."""
        committed = asyncio.ensure_future(self._store.outbox_event.wait())
        settled = asyncio.ensure_future(self._settled.wait())
        try:
            done, _ = await asyncio.wait(
                {committed, settled},
                timeout=self._poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            committed.cancel()
            settled.cancel()
        if not done:
            self._must_read = True
            if not (self._waiting or self._publishing or self._confirmed or self._refused):
                self._read_upto = 0
