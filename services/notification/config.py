"""The notification service's settings, from the environment (see chassis.config)."""

from pydantic import Field

from chassis.runtime import AuthenticatedSettings


class NotificationSettings(AuthenticatedSettings):
    service_name: str = "notification"
    smtp_host: str
    smtp_port: int = Field(ge=1, le=65535)
    smtp_sender: str = "ordermesh <no-reply@ordermesh.invalid>"
    smtp_username: str = ""
    smtp_password: str = ""
    # HTTP provider APIs for SMS and push; a channel without a URL is not set up.
    sms_provider_url: str = ""
    sms_provider_token: str = ""
    push_provider_url: str = ""
    push_provider_token: str = ""
    # Seconds before each retry of a failed attempt; after the last, the notification FAILED.
    notification_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    provider_timeout_s: float = Field(default=10.0, gt=0)
