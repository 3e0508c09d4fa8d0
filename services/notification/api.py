"""The gRPC face of the notification service: the caller's notifications."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from notification.v1 import notification_service_pb2 as pb
from notification.v1 import notification_service_pb2_grpc as pb_grpc
from ordermesh.grpc import Service
from ordermesh.identity import current_caller
from ordermesh.timestamps import timestamp
from ordermesh.vocabulary import enum_value

from services import vocabulary
from services.notification import domain
from services.notification.service import Notifications

Context: TypeAlias = grpc.aio.ServicerContext


def notification_proto(notification: Mapping[str, Any]) -> pb.Notification:
    channel = notification["channel"]
    return pb.Notification(
        notification_id=notification["_id"],
        kind=vocabulary.kind(notification["kind"]),
        channel=vocabulary.channel(channel),
        status=enum_value(pb.NotificationStatus, notification["status"]),
        recipient=domain.masked(channel, notification["address"]),
        subject=notification["subject"],
        subject_id=notification["subject_id"],
        attempts=len(notification["attempts"]),
        last_error=notification["last_error"],
        create_time=timestamp(notification["create_time"]),
        update_time=timestamp(notification["update_time"]),
    )


class NotificationApi(pb_grpc.NotificationServiceServicer):
    def __init__(self, notifications: Notifications):
        self._notifications = notifications

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        found, next_token = await self._notifications.list_notifications(
            current_caller().user_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListNotificationsResponse(
            notifications=[notification_proto(n) for n in found], next_page_token=next_token
        )


def service(notifications: Notifications) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["NotificationService"],
        servicer=NotificationApi(notifications),
        add_to_server=pb_grpc.add_NotificationServiceServicer_to_server,
    )
