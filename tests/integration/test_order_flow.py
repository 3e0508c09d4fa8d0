"""The order saga end to end over gRPC: real services, broker, stores, SMTP and HTTP providers."""

from __future__ import annotations

import grpc
import pytest
from common.v1 import notification_pb2
from order.v1 import order_service_pb2 as order_pb
from user.v1 import user_service_pb2 as user_pb

from harness.shop import eventually

APPROVED = order_pb.ORDER_STATUS_APPROVED
REJECTED = order_pb.ORDER_STATUS_REJECTED
CANCELLED = order_pb.ORDER_STATUS_CANCELLED


async def test_an_order_is_approved_and_its_owner_notified_by_every_chosen_channel(shop, system):
    product = await shop.product(price_minor=1250, stock=5)
    ada = await shop.register(name="Ada")
    await shop.users.UpdatePreferences(
        user_pb.UpdatePreferencesRequest(
            subscriptions=[
                user_pb.ChannelSubscription(
                    kind=notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED,
                    channels=[
                        notification_pb2.CHANNEL_EMAIL,
                        notification_pb2.CHANNEL_SMS,
                        notification_pb2.CHANNEL_PUSH,
                    ],
                )
            ],
            phone_number="+4915112345678",
            push_token="device-token-ada",
        ),
        metadata=ada.metadata,
        timeout=5,
    )

    placed = await shop.place(ada, [(product.product_id, 2)])
    assert placed.status == order_pb.ORDER_STATUS_PENDING
    order = await shop.settled(ada, placed.order_id)

    assert order.status == APPROVED, order.status_reason
    assert order.total.amount_minor == 2500
    assert await shop.available(product.product_id) == 3
    assert await shop.credit_available(ada) == 100_000 - 2500

    async def delivered():
        mails = [m for m in system.mail.to(ada.email) if "approved" in m["Subject"]]
        sms = [r for r in system.http.to("/sms") if r.body["to"] == "+4915112345678"]
        push = [r for r in system.http.to("/push") if r.body["to"] == "device-token-ada"]
        return mails and sms and push and (mails, sms, push)

    mails, sms, push = await eventually(delivered, what="email, SMS and push delivered")
    assert placed.order_id in mails[0].get_content()
    assert sms[0].headers["Authorization"] == "Bearer sms-test-token"
    assert push[0].headers["Idempotency-Key"].endswith(":push")

    listed = await eventually(
        lambda: _sent(shop, ada, placed.order_id), what="notifications listed as sent"
    )
    assert {n.channel for n in listed} == {
        notification_pb2.CHANNEL_EMAIL,
        notification_pb2.CHANNEL_SMS,
        notification_pb2.CHANNEL_PUSH,
    }


async def _sent(shop, session, subject_id):
    listed = [n for n in await shop.notifications_of(session) if n.subject_id == subject_id]
    sent = [n for n in listed if n.status == 2]
    return sent if len(sent) == 3 else None


async def test_an_order_beyond_the_stock_is_rejected_and_reserves_nothing(shop):
    product = await shop.product(stock=2)
    ada = await shop.register()

    order = await shop.settled(ada, (await shop.place(ada, [(product.product_id, 3)])).order_id)

    assert order.status == REJECTED
    assert "3 requested, 2 available" in order.status_reason
    assert await shop.available(product.product_id) == 2
    assert await shop.credit_available(ada) == 100_000


async def test_an_order_beyond_the_credit_limit_releases_the_stock_it_had_reserved(shop):
    product = await shop.product(price_minor=60_000, stock=5)
    ada = await shop.register()

    order = await shop.settled(ada, (await shop.place(ada, [(product.product_id, 2)])).order_id)

    assert order.status == REJECTED
    assert "credit limit exceeded" in order.status_reason
    await eventually(lambda: _equals(shop.available(product.product_id), 5), what="stock released")
    kinds = [
        order_pb.HistoryEntryKind.Name(e.kind) for e in await shop.history(ada, order.order_id)
    ]
    assert "HISTORY_ENTRY_KIND_COMPENSATION_SENT" in kinds
    assert await shop.credit_available(ada) == 100_000


async def _equals(awaitable, expected):
    return (await awaitable) == expected


async def test_cancelling_an_approved_order_releases_its_stock_and_credit(shop):
    product = await shop.product(price_minor=1000, stock=4)
    ada = await shop.register()
    order = await shop.settled(ada, (await shop.place(ada, [(product.product_id, 4)])).order_id)
    assert order.status == APPROVED

    cancelled = await shop.orders.CancelOrder(
        order_pb.CancelOrderRequest(order_id=order.order_id, reason="changed my mind"),
        metadata=ada.metadata,
        timeout=5,
    )

    assert cancelled.order.status == CANCELLED
    await eventually(lambda: _equals(shop.available(product.product_id), 4), what="stock back")
    await eventually(lambda: _equals(shop.credit_available(ada), 100_000), what="credit back")


async def test_placing_twice_with_one_idempotency_key_places_one_order(shop):
    product = await shop.product(stock=10)
    ada = await shop.register()

    first = await shop.place(ada, [(product.product_id, 1)], key="key-1")
    again = await shop.place(ada, [(product.product_id, 1)], key="key-1")

    assert again.order_id == first.order_id
    await shop.settled(ada, first.order_id)
    assert await shop.available(product.product_id) == 9


async def test_another_users_order_is_not_found_for_reading_listing_or_cancelling(shop):
    product = await shop.product()
    ada, bob = await shop.register(), await shop.register()
    order = await shop.place(ada, [(product.product_id, 1)])

    for call in (
        shop.orders.GetOrder(
            order_pb.GetOrderRequest(order_id=order.order_id), metadata=bob.metadata
        ),
        shop.orders.CancelOrder(
            order_pb.CancelOrderRequest(order_id=order.order_id), metadata=bob.metadata
        ),
        shop.orders.GetOrderHistory(
            order_pb.GetOrderHistoryRequest(order_id=order.order_id), metadata=bob.metadata
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await shop.orders.ListOrders(order_pb.ListOrdersRequest(), metadata=bob.metadata)
    assert list(listed.orders) == []


async def test_the_callers_orders_are_listed_newest_first_a_page_at_a_time(shop):
    product = await shop.product(stock=10)
    ada = await shop.register()
    placed = [await shop.place(ada, [(product.product_id, 1)]) for _ in range(3)]

    first = await shop.orders.ListOrders(
        order_pb.ListOrdersRequest(page_size=2), metadata=ada.metadata
    )
    second = await shop.orders.ListOrders(
        order_pb.ListOrdersRequest(page_size=2, page_token=first.next_page_token),
        metadata=ada.metadata,
    )

    newest_first = [o.order_id for o in reversed(placed)]
    assert [o.order_id for o in first.orders] == newest_first[:2]
    assert [o.order_id for o in second.orders] == newest_first[2:]
    assert second.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.orders.ListOrders(
            order_pb.ListOrdersRequest(page_token="not-a-token"), metadata=ada.metadata
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not-a-token" in raised.value.details()
