"""Wiring of the notification service: `python -m services.notification`."""

from __future__ import annotations

from chassis import config, telemetry
from chassis import logging as chassis_logging
from chassis.grpc import serve
from chassis.runtime import Runtime
from services import catalogue
from services.notification import api, consumers, store
from services.notification.clients import Channel, EmailChannel, HttpChannel
from services.notification.config import NotificationSettings
from services.notification.service import Notifications


async def main() -> None:
    settings = config.load(NotificationSettings)
    chassis_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    telemetry.configure(service=settings.service_name, instance=settings.instance_id)
    email = EmailChannel(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout_s=settings.provider_timeout_s,
    )
    channels: dict[str, Channel] = {"email": email}
    providers: list[EmailChannel | HttpChannel] = [email]
    for name, url, token in (
        ("sms", settings.sms_provider_url, settings.sms_provider_token),
        ("push", settings.push_provider_url, settings.push_provider_token),
    ):
        if url:
            provider = HttpChannel(
                name, url=url, token=token, timeout_s=settings.provider_timeout_s
            )
            channels[name] = provider
            providers.append(provider)
    async with Runtime.open(settings, collections=store.COLLECTIONS) as runtime:
        notifications = Notifications(
            runtime.store,
            channels=channels,
            retry_delays_s=settings.notification_retry_delays_s,
            owner=settings.instance_id,
        )
        for client in providers:
            runtime.on_close(client.close)
        await runtime.consume(consumers.EVENTS, consumers.handlers(notifications))
        runtime.background(notifications.dispatch_forever(), name="notification-dispatcher")
        await serve(
            settings,
            [api.service(notifications)],
            readiness=runtime.readiness(),
            authenticator=await runtime.token_verifier(catalogue.ISSUER),
            notes=runtime.notes,
            metrics=runtime.metrics,
        )
