"""common.v1's notification vocabulary in both directions: the enum values on the wire and the
names domain code uses ("email", "order_approved"). The user service stores each user's choice
of channels per kind; the notification service honours it; both translate here, once.
"""

from __future__ import annotations

from typing import TypeAlias

from common.v1 import notification_pb2

__all__ = ["channel", "channel_name", "kind", "kind_name"]

Channel: TypeAlias = notification_pb2.Channel.ValueType
Kind: TypeAlias = notification_pb2.NotificationKind.ValueType


def channel_name(value: Channel) -> str:
    """CHANNEL_EMAIL -> "email"; CHANNEL_UNSPECIFIED -> "unspecified"."""
    return notification_pb2.Channel.Name(value).removeprefix("CHANNEL_").lower()


def kind_name(value: Kind) -> str:
    """NOTIFICATION_KIND_ORDER_APPROVED -> "order_approved"."""
    return notification_pb2.NotificationKind.Name(value).removeprefix("NOTIFICATION_KIND_").lower()


def channel(name: str) -> Channel:
    return notification_pb2.Channel.Value(f"CHANNEL_{name.upper()}")


def kind(name: str) -> Kind:
    return notification_pb2.NotificationKind.Value(f"NOTIFICATION_KIND_{name.upper()}")
