"""Wiring of the notification service: `python -m services.notification`."""

from __future__ import annotations

from ordermesh.defaults import Served, run_service
from ordermesh.runtime import Runtime

from services.issuer import ISSUER
from services.notification import api, consumers, store
from services.notification.clients import Channel, EmailChannel, HttpChannel
from services.notification.config import NotificationSettings
from services.notification.service import Notifications


async def main() -> None:
    await run_service(NotificationSettings, wire, collections=store.COLLECTIONS, issuer=ISSUER)


async def wire(runtime: Runtime, settings: NotificationSettings) -> Served:
    email = EmailChannel(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout_s=settings.provider_timeout_s,
    )
    channels: dict[str, Channel] = {"email": email}
    runtime.on_close(email.close)
    for name, url, token in (
        ("sms", settings.sms_provider_url, settings.sms_provider_token),
        ("push", settings.push_provider_url, settings.push_provider_token),
    ):
        if url:
            provider = HttpChannel(
                name, url=url, token=token, timeout_s=settings.provider_timeout_s
            )
            channels[name] = provider
            runtime.on_close(provider.close)
    notifications = Notifications(
        runtime.store,
        channels=channels,
        retry_delays_s=settings.notification_retry_delays_s,
        owner=settings.instance_id,
    )
    await runtime.consume(consumers.EVENTS, consumers.handlers(notifications))
    runtime.background(notifications.dispatch_forever(), name="notification-dispatcher")
    return Served([api.service(notifications)])
