"""The rate-limit descriptors' vocabulary: the names the gateway describes a request with and
the rate-limit service counts by.

The service that counts owns them; the gateway (`ordermesh.gateway.envoy.limits`) builds its
descriptors from them. A descriptor is two entries: the limit's class (LIMIT_CLASS: a `Limit`), then
what it counts by (BY_USER or BY_ADDRESS, filled in by Envoy). The global limits (GLOBAL_LIMITS) are
those counted here, each named "<class>:<by>" after its descriptor, and each a setting of the
service (`RateLimitSettings`); the reads are counted by each gateway itself.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BY_ADDRESS", "BY_USER", "GLOBAL_LIMITS", "LIMIT_CLASS", "Limit"]


class Limit(StrEnum):
    """The classes of the gateway's rate-limit descriptors (the entry LIMIT_CLASS)."""

    # Global (the rate-limit service): public writes (sign-in attempts) per address, other
    # writes per user and per address.
    SIGN_IN = "sign-in"
    WRITE = "write"
    # Local (Envoy): reads per verified user, or per address for a caller without a token.
    READ_BY_USER = "read-by-user"
    READ_BY_ADDRESS = "read-by-address"


# The descriptor entries: the limit's class, and what it counts by (filled in by Envoy).
LIMIT_CLASS = "class"
BY_USER = "user"
BY_ADDRESS = "remote_address"
# Each global limit's descriptor, "<class>:<by>", and the rate-limit service's setting of it.
GLOBAL_LIMITS = {
    f"{Limit.SIGN_IN}:{BY_ADDRESS}": "rate_limit_sign_in",
    f"{Limit.WRITE}:{BY_USER}": "rate_limit_write_per_user",
    f"{Limit.WRITE}:{BY_ADDRESS}": "rate_limit_write_per_address",
}
