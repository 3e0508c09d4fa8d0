"""Web pages at the gateway (the operator console at /console, the storefront at /shop, where
the gateway's root leads): each service's pages from its instances' HTTP servers (a
`<service>-web` cluster), under the public listener's limits and hop headers. The pages keep
their own sessions (a cookie, never a token in a URL) and reach the system back through this
gateway with the signed-in user's token, policed like any client: so the route asks for no
token itself, verifies one if sent, and never asks the auth service."""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Service
from ordermesh.gateway.envoy.access import EXT_AUTHZ_OFF, token_if_any
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.limits import read_limits
from ordermesh.gateway.envoy.names import (
    EXT_AUTHZ_FILTER,
    INTERNAL_TOKEN,
    TRANSCODER,
    hop_headers,
    seconds,
    web_cluster,
)
from ordermesh.gateway.envoy.retries import NEVER_ARRIVED
from ordermesh.identity import INTERNAL_HEADER

__all__ = ["web_routes"]


def web_routes(service: Service, config: GatewayConfig) -> list[dict[str, Any]]:
    """`service.web` and what is under it, to its instances: every request counted as a read
    of its client (its pages ask for little; what they do, they do through the gateway's
    routes, under those routes' limits, counted against the browser they name:
    access.client_address), with the internal hop's secret added, which the instances require
    (ordermesh.metrics), so that their port is no door around the gateway. The home service's
    pages (`Service.home`) are also where the gateway's root sends a browser."""
    return [*([_home(service, config)] if service.home else []), _pages(service, config)]


def _home(service: Service, config: GatewayConfig) -> dict[str, Any]:
    """The gateway's root, `/` alone, to the home service's pages (a redirect Envoy answers
    itself: nothing is asked of the auth service)."""
    per_route = _NOT_TRANSCODED | ({EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF} if config.auth else {})
    return {
        "match": {"path": "/"},
        "redirect": {"path_redirect": f"{service.web}/", "response_code": "FOUND"},
        "typed_per_filter_config": per_route,
    }


# A web page is no RPC: the REST transcoder, which refuses a path that names none, is off.
_NOT_TRANSCODED: dict[str, Any] = {
    TRANSCODER: {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }
}


def _pages(service: Service, config: GatewayConfig) -> dict[str, Any]:
    per_route = dict(_NOT_TRANSCODED)
    if config.auth:
        per_route |= token_if_any() | {EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF}
    return {
        # `/console` itself and everything under `/console/`, not `/consoles`.
        "match": {"safe_regex": {"regex": f"^{service.web}(/.*)?$"}},
        "route": {
            "rate_limits": read_limits(),
            "cluster": web_cluster(service.name),
            "timeout": seconds(config.route_timeout_s),
            "retry_policy": {"retry_on": ",".join(NEVER_ARRIVED), "num_retries": 2},
        },
        "typed_per_filter_config": per_route,
        # The browser's address goes on in CLIENT_HEADER, as the public listener took it: the
        # site names it back on its calls of the API (access.client_address).
        "request_headers_to_add": hop_headers((INTERNAL_HEADER, INTERNAL_TOKEN)),
    }
