"""The auth service's settings, from the environment (see ordermesh.config)."""

from pydantic import Field

from ordermesh.roles import CatalogueReaderSettings, PolicySignerSettings
from ordermesh.runtime import AuthenticatedSettings

__all__ = ["AuthSettings"]


class AuthSettings(AuthenticatedSettings, PolicySignerSettings, CatalogueReaderSettings):
    service_name: str = "auth"
    # Required here: where the edge policy is published to every gateway (ordermesh.policy).
    redis_url: str = Field(min_length=1)
    # How often the token issuer's key set is fetched and republished; the issuer publishes
    # each new key `signing_key_lead_s` before it signs with it, which must be longer.
    keys_refresh_s: float = Field(default=10.0, gt=0)
