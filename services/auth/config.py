"""The auth service's settings, from the environment (see chassis.config)."""

from pydantic import Field

from chassis.runtime import AuthenticatedSettings


class AuthSettings(AuthenticatedSettings):
    service_name: str = "auth"
    # Required here: the key the callers it forwards are signed with (chassis.identity).
    identity_key: str = Field(min_length=32, repr=False)
