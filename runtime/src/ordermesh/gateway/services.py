"""The gateway's own services, as entries of a project's catalogue: the auth service
(ordermesh.gateway.auth) and the rate-limit service (ordermesh.gateway.ratelimit), run from the
runtime's packages under the names Envoy's configuration calls them by.

    CATALOGUE = Catalogue((*my_services, *GATEWAY_SERVICES), issuer=ISSUER)
"""

from __future__ import annotations

from ordermesh.catalogue import Service
from ordermesh.gateway.auth.config import AuthSettings
from ordermesh.gateway.envoy.names import AUTH_CLUSTER, RATE_LIMIT_CLUSTER
from ordermesh.gateway.ratelimit.config import RateLimitSettings

__all__ = ["AUTH", "GATEWAY_SERVICES", "RATE_LIMIT"]

AUTH = Service(AUTH_CLUSTER, AuthSettings, gateway=True, package="ordermesh.gateway.auth")
RATE_LIMIT = Service(
    RATE_LIMIT_CLUSTER, RateLimitSettings, gateway=True, package="ordermesh.gateway.ratelimit"
)
GATEWAY_SERVICES = (AUTH, RATE_LIMIT)
