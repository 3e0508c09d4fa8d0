"""The user service's settings, from the environment (see ordermesh.config)."""

from ordermesh.runtime import BackboneSettings
from pydantic import Field


class UserSettings(BackboneSettings):
    service_name: str = "user"
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"
    access_token_ttl_s: float = Field(default=900.0, gt=0)
    refresh_token_ttl_s: float = Field(default=30 * 86400.0, gt=0)
    # How long one key signs before the next takes over; how long before that the next is
    # published (longer than the gateways take to learn of a new key: the auth service's
    # KEYS_REFRESH_S, 10 s, and a second to reach Envoy); how often an instance re-reads which
    # key signs (to follow a rotation another instance made).
    signing_key_lifetime_s: float = Field(default=7 * 86400.0, gt=0)
    signing_key_lead_s: float = Field(default=3600.0, gt=0)
    signing_key_recheck_s: float = Field(default=30.0, gt=0)
    # Every new account's credit, in minor units of CURRENCY.
    credit_limit_minor: int = Field(default=100_000, ge=0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
