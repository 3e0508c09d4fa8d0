"""The rate-limit service's settings, from the environment (see ordermesh.config)."""

from pydantic import Field

from ordermesh.config import ServiceSettings

__all__ = ["RateLimitSettings"]


class RateLimitSettings(ServiceSettings):
    service_name: str = "ratelimit"
    # Where the counters live; defaults to REDIS_URL (the registry's Redis).
    rate_limit_redis_url: str = ""
    # Per client address: sign-in attempts (the RPCs a contract marks as signing in: the
    # example's Login, Register, RefreshToken).
    rate_limit_sign_in: str = Field(default="10/m")
    # Per user, and per client address: calls that change state.
    rate_limit_write_per_user: str = Field(default="60/m")
    rate_limit_write_per_address: str = Field(default="300/m")
