"""Web pages at the gateway (the operator console at /console): each service's pages from its
instances' HTTP servers (a `<service>-web` cluster), under the public listener's limits and
hop headers. The pages keep their own sessions (a cookie, never a token in a URL) and reach
the system back through this gateway with the signed-in user's token, policed like any client:
so the route asks for no token itself, verifies one if sent, and never asks the auth service."""

from __future__ import annotations

from typing import Any

from chassis.identity import INTERNAL_HEADER
from gateway.envoy.access import EXT_AUTHZ_OFF, token_if_any
from gateway.envoy.config import GatewayConfig
from gateway.envoy.limits import read_limits, sign_in_limits
from gateway.envoy.names import (
    CLIENT_HEADER,
    EXT_AUTHZ_FILTER,
    INTERNAL_TOKEN,
    TRANSCODER,
    hop_headers,
    seconds,
    web_cluster,
)
from gateway.envoy.retries import NEVER_ARRIVED
from services.catalogue import Service

__all__ = ["web_routes"]


def web_routes(service: Service, config: GatewayConfig) -> list[dict[str, Any]]:
    """`service.web` and what is under it, to its instances: every request counted as a read
    of its client (its pages ask for little; what they do, they do through the gateway's
    routes, under those routes' limits), a sign-in (a POST to `<web>/login`) also as a sign-in
    attempt of its client's address, as Login is; and the internal hop's secret added, which
    the instances require (chassis.metrics), so that their port is no door around the
    gateway."""
    pages = _route(service, config, read_limits())
    sign_in = _route(service, config, [*read_limits(), *sign_in_limits(config)])
    sign_in["match"] = {
        "path": f"{service.web}/login",
        "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
    }
    return [sign_in, pages]


def _route(service: Service, config: GatewayConfig, limits: list[dict[str, Any]]) -> dict[str, Any]:
    per_route: dict[str, Any] = {
        TRANSCODER: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        },
    }
    if config.auth:
        per_route |= token_if_any() | {EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF}
    return {
        # `/console` itself and everything under `/console/`, not `/consoles`.
        "match": {"safe_regex": {"regex": f"^{service.web}(/.*)?$"}},
        "route": {
            "rate_limits": limits,
            "cluster": web_cluster(service.name),
            "timeout": seconds(config.route_timeout_s),
            "retry_policy": {"retry_on": ",".join(NEVER_ARRIVED), "num_retries": 2},
        },
        "typed_per_filter_config": per_route,
        "request_headers_to_add": hop_headers(
            (INTERNAL_HEADER, INTERNAL_TOKEN),
            (CLIENT_HEADER, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        ),
    }
