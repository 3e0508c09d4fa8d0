"""Notifications honour preferences, retry a failing channel, and never let one hold up another."""

from __future__ import annotations

import asyncio

from common.v1 import notification_pb2
from notification.v1 import notification_service_pb2 as notification_pb
from ordermesh.store.sqlite import SqliteStore
from user.v1 import user_service_pb2 as user_pb

from harness.shop import eventually
from services.notification.service import Notifications
from services.notification.store import COLLECTIONS, NOTIFICATIONS

SENT = notification_pb.NOTIFICATION_STATUS_SENT
FAILED = notification_pb.NOTIFICATION_STATUS_FAILED
EMAIL, SMS, PUSH = (
    notification_pb2.CHANNEL_EMAIL,
    notification_pb2.CHANNEL_SMS,
    notification_pb2.CHANNEL_PUSH,
)


async def choose(shop, session, kind, channels, *, phone="", push=""):
    await shop.users.UpdatePreferences(
        user_pb.UpdatePreferencesRequest(
            subscriptions=[user_pb.ChannelSubscription(kind=kind, channels=channels)],
            phone_number=phone,
            push_token=push,
        ),
        metadata=session.metadata,
        timeout=5,
    )


async def settled_notifications(shop, session, subject_id, count):
    async def all_settled():
        found = [n for n in await shop.notifications_of(session) if n.subject_id == subject_id]
        done = [n for n in found if n.status in (SENT, FAILED)]
        return len(done) == count and {n.channel: n for n in done}

    return await eventually(all_settled, what=f"{count} notifications of {subject_id} settled")


async def test_a_new_account_is_welcomed_by_email(shop, system):
    session = await shop.register(name="Grace")

    mail = await eventually(lambda: system.mail.to(session.email), what="welcome email")

    assert mail[0]["Subject"] == "Welcome to ordermesh"
    assert "Hello Grace" in mail[0].get_content()
    listed = await settled_notifications(shop, session, session.user_id, 1)
    assert listed[EMAIL].recipient.startswith(session.email[0] + "***@")


async def test_no_channel_means_no_notification(shop, system):
    product = await shop.product()
    session = await shop.register()
    await choose(shop, session, notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED, [])
    order = await shop.settled(
        session, (await shop.place(session, [(product.product_id, 1)])).order_id
    )
    await settled_notifications(shop, session, session.user_id, 1)  # the welcome

    rejected_product = await shop.product(stock=0)
    rejected = await shop.place(session, [(rejected_product.product_id, 1)])
    await shop.settled(session, rejected.order_id)
    await settled_notifications(shop, session, rejected.order_id, 1)  # rejections still by email

    assert not [n for n in await shop.notifications_of(session) if n.subject_id == order.order_id]
    assert not [m for m in system.mail.to(session.email) if "approved" in m["Subject"]]


async def test_a_failing_provider_is_retried_with_backoff_while_the_others_deliver(shop, system):
    product = await shop.product()
    session = await shop.register()
    phone = "+4915100000001"
    await choose(
        shop, session, notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED, [EMAIL, SMS], phone=phone
    )
    system.http.fail_next(503, 503)

    order = await shop.place(session, [(product.product_id, 1)])
    listed = await settled_notifications(shop, session, order.order_id, 2)

    assert listed[EMAIL].status == SENT
    assert listed[EMAIL].attempts == 1
    assert listed[SMS].status == SENT
    assert listed[SMS].attempts == 3
    assert len([r for r in system.http.to("/sms") if r.body["to"] == phone]) == 1


async def test_a_provider_that_refuses_for_good_fails_at_once_and_the_others_still_deliver(
    shop, system
):
    product = await shop.product()
    session = await shop.register()
    await choose(
        shop,
        session,
        notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED,
        [EMAIL, PUSH],
        push="device-refused",
    )
    system.http.fail_next(400)

    order = await shop.place(session, [(product.product_id, 1)])
    listed = await settled_notifications(shop, session, order.order_id, 2)

    assert listed[PUSH].status == FAILED
    assert listed[PUSH].attempts == 1
    assert "400" in listed[PUSH].last_error
    assert listed[EMAIL].status == SENT


class SlowProvider:
    """A provider (outside our control) that takes a while to accept each message."""

    name = "email"

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.received: list[str] = []

    async def send(self, draft, *, idempotency_key: str) -> None:
        await asyncio.sleep(self.delay_s)
        self.received.append(idempotency_key)


async def test_two_dispatchers_never_send_the_same_notification_when_sends_outlast_the_lease(
    tmp_path,
):
    """The dispatch lease ran out during a slow batch; the other instance took it and sent the
    same pending notifications again."""
    store = SqliteStore(tmp_path / "notification.db")
    await store.open(COLLECTIONS)
    provider = SlowProvider(delay_s=1.0)
    dispatchers = [
        Notifications(store, channels={"email": provider}, owner=owner, lease_ttl_s=0.3,
                      poll_interval_s=0.05)
        for owner in ("a", "b")
    ]  # fmt: skip
    async with store.transaction() as tx:
        for n in range(5):
            await tx.insert(NOTIFICATIONS.name, f"account_created:u-{n}:email", {
                "user_id": f"u-{n}", "kind": "account_created", "channel": "email",
                "address": f"u-{n}@example.com", "subject": "Welcome", "body": "Hello",
                "subject_id": f"u-{n}", "status": "PENDING", "attempts": [], "last_error": "",
                "next_attempt_at": 0.0, "create_time": 0.0, "update_time": 0.0,
            })  # fmt: skip
    running = [asyncio.create_task(d.dispatch_forever()) for d in dispatchers]
    try:
        await eventually(lambda: len(provider.received) >= 5, what="5 notifications sent")
        await asyncio.sleep(2 * provider.delay_s)  # time for a second send, if one started
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await store.close()
    assert sorted(provider.received) == sorted(f"account_created:u-{n}:email" for n in range(5))
