"""The notification service's settings, from the environment (see ordermesh.config)."""

from ordermesh.roles import NotifierSettings
from ordermesh.runtime import AuthenticatedSettings
from pydantic import Field


class NotificationSettings(AuthenticatedSettings, NotifierSettings):
    service_name: str = "notification"
    # Seconds before each retry of a failed attempt; after the last, the notification FAILED.
    notification_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    provider_timeout_s: float = Field(default=10.0, gt=0)
