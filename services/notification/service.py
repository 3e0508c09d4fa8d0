"""The notification service's use cases: keep recipients, write notifications, deliver them.

Delivery is split from the decision to notify: a consumer's transaction writes one PENDING
notification per wanted channel (with the inbox mark, so an event notifies once); the
dispatcher then sends what is due, each notification on its own, so a slow or failing channel
holds up no other. A transient failure schedules the next attempt after the channel's backoff;
after the last, or on a permanent failure, the notification is FAILED. Every attempt is stored.
A crash between a provider's acceptance and the commit of SENT sends that notification again
(at least once); the provider gets the notification id as idempotency key to drop the copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from notification.v1 import events_pb2
from order.v1 import events_pb2 as order_events
from order.v2 import events_pb2 as order_events_v2
from ordermesh import pages
from ordermesh.events import outgoing
from ordermesh.lease import Lease
from ordermesh.logging import get_logger
from ordermesh.store import Store, Transaction, run_transaction
from ordermesh.watch import follow
from user.v1 import events_pb2 as user_events
from user.v1 import user_service_pb2

from services import vocabulary
from services.notification import domain
from services.notification.clients import Channel
from services.notification.store import NOTIFICATIONS, RECIPIENTS

log = get_logger(__name__)

PRODUCER = "notification"


def preferences_of(proto: user_service_pb2.Preferences) -> dict[str, Any]:
    return {
        "channels": {
            vocabulary.kind_name(s.kind): [vocabulary.channel_name(c) for c in s.channels]
            for s in proto.subscriptions
        },
        "phone_number": proto.phone_number,
        "push_token": proto.push_token,
    }


class Notifications:
    def __init__(
        self,
        store: Store,
        *,
        channels: Mapping[str, Channel],
        retry_delays_s: Sequence[float] = (1.0, 5.0, 30.0),
        owner: str = "notification",
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = 1.0,
        claim_s: float = 120.0,
        lease_ttl_s: float = 10.0,
    ):
        """`claim_s`: how long a notification being sent is kept from other dispatchers; longer
        than any send takes (the providers' timeouts)."""
        self._store = store
        self._channels = dict(channels)
        self._retry_delays_s = list(retry_delays_s)
        self._lease = Lease(store, "notifications", owner=owner, ttl_s=lease_ttl_s)
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._claim_s = claim_s
        self._due = asyncio.Event()

    # -- what the consumers call -----------------------------------------------------------

    async def user_registered(self, tx: Transaction, event: user_events.UserRegistered) -> None:
        recipient = {
            "email": event.email,
            "display_name": event.display_name,
            "preferences": preferences_of(event.preferences),
        }
        existing = await tx.get(RECIPIENTS.name, event.user_id)
        if existing is None:
            recipient = await tx.insert(RECIPIENTS.name, event.user_id, recipient)
        else:
            recipient = await tx.update(RECIPIENTS.name, {**existing, **recipient})
        subject, body = domain.welcome_text(event.display_name)
        await self._notify(tx, recipient, domain.ACCOUNT_CREATED, event.user_id, subject, body)

    async def preferences_updated(
        self, tx: Transaction, event: user_events.PreferencesUpdated
    ) -> None:
        recipient = await tx.get(RECIPIENTS.name, event.user_id)
        if recipient is None:
            raise domain.RecipientUnknown(f"user {event.user_id} is not known here yet")
        preferences = preferences_of(event.preferences)
        await tx.update(RECIPIENTS.name, {**recipient, "preferences": preferences})

    async def order_event(
        self,
        tx: Transaction,
        kind: str,
        event: order_events_v2.OrderApproved
        | order_events.OrderApproved
        | order_events.OrderRejected
        | order_events.OrderCancelled,
    ) -> None:
        """An order's outcome, told. order.v1.OrderApproved is still taken while it drains
        from the queue (its successor, order.v2.OrderApproved, is what is bound)."""
        recipient = await tx.get(RECIPIENTS.name, event.user_id)
        if recipient is None:
            raise domain.RecipientUnknown(f"user {event.user_id} is not known here yet")
        lines: list[str] = []
        delivery: list[str] = []
        reason = ""
        if isinstance(event, order_events_v2.OrderApproved | order_events.OrderApproved):
            items = event.items if isinstance(event, order_events_v2.OrderApproved) else event.lines
            lines = [
                f"{line.quantity} x {line.product_name} at "
                f"{domain.money(line.unit_price.amount_minor, line.unit_price.currency_code)}"
                for line in items
            ]
            lines.append(
                f"total {domain.money(event.total.amount_minor, event.total.currency_code)}"
            )
            if isinstance(event, order_events_v2.OrderApproved) and event.HasField(
                "delivery_address"
            ):
                address = event.delivery_address
                delivery = domain.address_lines(
                    address.recipient,
                    address.address_lines,
                    address.postal_code,
                    address.locality,
                    address.region_code,
                )
        else:
            reason = event.reason
        subject, body = domain.order_text(
            kind,
            name=recipient["display_name"],
            order_id=event.order_id,
            reason=reason,
            lines=lines,
            delivery=delivery,
        )
        await self._notify(tx, recipient, kind, event.order_id, subject, body)

    async def _notify(
        self,
        tx: Transaction,
        recipient: Mapping[str, Any],
        kind: str,
        subject_id: str,
        subject: str,
        body: str,
    ) -> None:
        now = self._clock()
        for draft in domain.drafts(recipient, kind, subject, body):
            notification_id = f"{kind}:{subject_id}:{draft.channel}"
            if await tx.get(NOTIFICATIONS.name, notification_id) is not None:
                continue  # the same fact arrived again under another event id
            await tx.insert(
                NOTIFICATIONS.name,
                notification_id,
                {
                    "user_id": recipient["_id"],
                    "kind": kind,
                    "channel": draft.channel,
                    "address": draft.address,
                    "subject": draft.subject,
                    "body": draft.body,
                    "subject_id": subject_id,
                    "status": domain.PENDING,
                    "attempts": [],
                    "last_error": "",
                    "next_attempt_at": now,
                    "create_time": now,
                    "update_time": now,
                },
            )
        self._due.set()

    # -- what the API serves ---------------------------------------------------------------

    async def list_notifications(
        self, user_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        return await pages.read_page(
            self._store,
            NOTIFICATIONS.name,
            where={"user_id": user_id},
            order_by="create_time",
            descending=True,
            page_size=page_size,
            page_token=page_token,
        )

    # -- delivery --------------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Sends what is due until cancelled, while this instance holds the dispatch lease: at
        once, after each notification written here, and every `poll_interval_s`."""
        await follow(
            self._dispatch_if_leased,
            notices=self._due,
            refresh_s=self._poll_interval_s,
            name="notification-dispatcher",
            failed="dispatching notifications failed; trying again",
        )

    async def _dispatch_if_leased(self) -> None:
        if await self._lease.held():
            await self.dispatch_due()

    async def dispatch_due(self, *, limit: int = 64) -> int:
        """Sends the notifications whose attempt is due, concurrently; returns how many.

        Each is claimed first, in the transaction that reads it: its next attempt is moved
        `claim_s` ahead, so no other dispatcher (an instance that took the lease while this
        one's sends were slow) sends it meanwhile; if this instance dies mid-send, the claim
        runs out and another sends it again (with the same idempotency key)."""
        due = await run_transaction(self._store, lambda tx: self._claim_due(tx, limit))
        await asyncio.gather(*(self._attempt(n) for n in due))
        return len(due)

    async def _claim_due(self, tx: Transaction, limit: int) -> list[dict[str, Any]]:
        now = self._clock()
        pending = await tx.find(
            NOTIFICATIONS.name,
            where={"status": domain.PENDING},
            order_by="next_attempt_at",
            limit=limit,
        )
        return [
            await tx.update(NOTIFICATIONS.name, {**n, "next_attempt_at": now + self._claim_s})
            for n in pending
            if n["next_attempt_at"] <= now
        ]

    async def _attempt(self, notification: Mapping[str, Any]) -> None:
        channel = self._channels.get(notification["channel"])
        error: Exception | None = None
        if channel is None:
            error = domain.PermanentFailure(f"channel {notification['channel']} is not set up")
        else:
            draft = domain.Draft(
                channel=notification["channel"],
                address=notification["address"],
                subject=notification["subject"],
                body=notification["body"],
            )
            try:
                await channel.send(draft, idempotency_key=notification["_id"])
            except Exception as exc:  # noqa: BLE001 - every failure is an outcome to store
                error = exc
        await run_transaction(self._store, lambda tx: self._settle(tx, notification["_id"], error))

    async def _settle(self, tx: Transaction, notification_id: str, error: Exception | None) -> None:
        notification = await tx.get(NOTIFICATIONS.name, notification_id)
        if notification is None or notification["status"] != domain.PENDING:
            return
        now = self._clock()
        attempts = [
            *notification["attempts"],
            {"time": now, "error": f"{type(error).__name__}: {error}" if error else ""},
        ]
        updated: dict[str, Any] = {**notification, "attempts": attempts, "update_time": now}
        about = {
            "notification_id": notification_id,
            "user_id": notification["user_id"],
            "kind": vocabulary.kind(notification["kind"]),
            "channel": vocabulary.channel(notification["channel"]),
            "subject_id": notification["subject_id"],
        }
        outcome: events_pb2.NotificationSent | events_pb2.NotificationFailed | None = None
        if error is None:
            updated["status"] = domain.SENT
            outcome = events_pb2.NotificationSent(**about)
            outcome.sent_time.FromNanoseconds(int(now * 1e9))
        else:
            updated["last_error"] = attempts[-1]["error"][:500]
            delay = None
            if not isinstance(error, domain.PermanentFailure):
                delay = domain.next_attempt_delay(len(attempts), self._retry_delays_s)
            if delay is not None:
                updated["next_attempt_at"] = now + delay
                log.warning(
                    "notification attempt failed; retrying",
                    id=notification_id,
                    attempt=len(attempts),
                    delay_s=delay,
                    error=updated["last_error"],
                )
            else:
                updated["status"] = domain.FAILED
                log.error(
                    "notification failed",
                    id=notification_id,
                    attempts=len(attempts),
                    error=updated["last_error"],
                )
                outcome = events_pb2.NotificationFailed(
                    **about, attempts=len(attempts), error=updated["last_error"]
                )
        if outcome is not None:
            tx.publish(outgoing(outcome, producer=PRODUCER), key=notification["user_id"])
        await tx.update(NOTIFICATIONS.name, updated)
