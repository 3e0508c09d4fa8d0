"""Requests are held to the bounds and enum values their contracts declare, naming the field."""

import pytest
from common.v1 import notification_pb2
from order.v1 import order_service_pb2 as order_pb
from ordermesh.bounds import check
from ordermesh.errors import InvalidArgument
from user.v1 import user_service_pb2 as user_pb


def test_a_request_within_its_bounds_passes():
    check(
        order_pb.PlaceOrderRequest(
            idempotency_key="k" * 128,
            items=[order_pb.OrderItem(product_id="p" * 64, quantity=1) for _ in range(100)],
        )
    )


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (
            order_pb.CancelOrderRequest(order_id="o-1", reason="r" * 501),
            "reason: 501 characters, at most 500",
        ),
        (
            order_pb.PlaceOrderRequest(idempotency_key="k", items=[order_pb.OrderItem()] * 101),
            "items: 101 items, at most 100",
        ),
        (
            order_pb.PlaceOrderRequest(
                idempotency_key="k",
                items=[order_pb.OrderItem(product_id="p"), order_pb.OrderItem(product_id="p" * 65)],
            ),
            "items[1].product_id: 65 characters, at most 64",
        ),
        (
            user_pb.UpdatePreferencesRequest(
                subscriptions=[
                    user_pb.ChannelSubscription(
                        kind=notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED, channels=[99]
                    )
                ]
            ),
            "subscriptions[0].channels[0]: 99 is not a value of common.v1.Channel",
        ),
        (
            user_pb.UpdatePreferencesRequest(subscriptions=[user_pb.ChannelSubscription(kind=-7)]),
            "subscriptions[0].kind: -7 is not a value of common.v1.NotificationKind",
        ),
    ],
)
def test_a_request_beyond_its_contract_is_invalid_naming_the_field(request_, problem):
    with pytest.raises(InvalidArgument) as refused:
        check(request_)

    assert str(refused.value) == problem


def test_characters_are_counted_not_bytes():
    check(user_pb.UpdateProfileRequest(display_name="é" * 100))
