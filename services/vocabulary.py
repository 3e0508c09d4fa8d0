"""common.v1's notification vocabulary, named in lower case ("email", "order_approved") in the
notification service's store and its callers' preferences, in both directions
(ordermesh.vocabulary's translation, lower-cased)."""

from __future__ import annotations

from typing import TypeAlias

from common.v1 import notification_pb2
from ordermesh.vocabulary import enum_name, enum_value

Channel: TypeAlias = notification_pb2.Channel.ValueType
Kind: TypeAlias = notification_pb2.NotificationKind.ValueType


def channel_name(value: Channel) -> str:
    """CHANNEL_EMAIL -> "email"; CHANNEL_UNSPECIFIED -> "unspecified"."""
    return enum_name(notification_pb2.Channel, value).lower()


def kind_name(value: Kind) -> str:
    """NOTIFICATION_KIND_ORDER_APPROVED -> "order_approved"."""
    return enum_name(notification_pb2.NotificationKind, value).lower()


def channel(name: str) -> Channel:
    """The channel a name in any case stands for: "email" -> CHANNEL_EMAIL."""
    return enum_value(notification_pb2.Channel, name.upper())


def kind(name: str) -> Kind:
    """The kind a name in any case stands for: "order_approved" ->
    NOTIFICATION_KIND_ORDER_APPROVED."""
    return enum_value(notification_pb2.NotificationKind, name.upper())
