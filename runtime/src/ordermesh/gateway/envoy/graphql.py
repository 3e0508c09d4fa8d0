"""GraphQL at the gateway: `/graphql` to the federation gateway (gateway/graphql), with the edge
auth and read limits of REST, and the subgraph listener through which it calls each service's
subgraph (a `<service>-graph` cluster), counting mutations against the global write limits and
every operation's cost against its client's reads."""

from __future__ import annotations

from typing import Any

from ordermesh.gateway.envoy.access import (
    EXT_AUTHZ_OFF,
    strip_identity_headers,
    token_filters,
    token_if_any,
)
from ordermesh.gateway.envoy.clusters import health_check
from ordermesh.gateway.envoy.config import GatewayConfig, policy_paths
from ordermesh.gateway.envoy.ecds import from_policy_file
from ordermesh.gateway.envoy.limits import (
    COST_OF_A_READ,
    cost_limits,
    global_limit,
    read_limits,
    reads_per_client,
    write_limits,
)
from ordermesh.gateway.envoy.listeners import listener, tracing
from ordermesh.gateway.envoy.names import (
    EXT_AUTHZ_FILTER,
    GRAPHQL_CLUSTER,
    GRAPHQL_PATH,
    INTERNAL_TOKEN,
    OPERATION_HEADER,
    TRANSCODER,
    graph_cluster,
    hop_headers,
    seconds,
    subgraph_path,
    type_url,
)
from ordermesh.gateway.envoy.replies import access_log, graphql_error_body, replies
from ordermesh.gateway.envoy.retries import HOST_REPICKS, NEVER_ARRIVED, PREVIOUS_HOSTS
from ordermesh.identity import INTERNAL_HEADER

__all__ = ["graphql_cluster", "graphql_route", "subgraph_listener"]


def _off(filter_name: str) -> dict[str, Any]:
    return {filter_name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                          "disabled": True}}  # fmt: skip


def graphql_route(config: GatewayConfig) -> dict[str, Any]:
    """`/graphql`, to the federation gateway: a token verified if one is sent (public fields
    need none; the subgraphs verify it again, as the services do), its session not revoked,
    and every request counted as a read of its client, as REST reads are. Mutations count as
    writes too, at the subgraph listener."""
    per_route = _off(TRANSCODER)
    if config.auth:
        per_route |= token_if_any() | {EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF}
    return {
        "match": {"path": GRAPHQL_PATH},
        "route": {
            "rate_limits": read_limits(),
            "cluster": GRAPHQL_CLUSTER,
            "timeout": seconds(config.route_timeout_s),
            "retry_policy": {
                "retry_on": ",".join(NEVER_ARRIVED),
                "num_retries": 2,
            },
        },
        "typed_per_filter_config": per_route,
        # The client's address goes on in CLIENT_HEADER, as the public listener took it.
        "request_headers_to_add": hop_headers((INTERNAL_HEADER, INTERNAL_TOKEN)),
    }


def graphql_cluster(config: GatewayConfig) -> dict[str, Any]:
    host, _, port = config.graphql_address.rpartition(":")
    address = {"socket_address": {"address": host, "port_value": int(port)}}
    return {
        "name": GRAPHQL_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": GRAPHQL_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "health_checks": [health_check(config, {"http_health_check": {"path": "/readiness"}})],
    }


def subgraph_listener(config: GatewayConfig) -> dict[str, Any]:
    """The federation gateway's way to the subgraphs: `subgraph_path(service)` to the
    service's healthy instances, balanced, retried when a call never reached one; a mutation
    (OPERATION_HEADER) counted against the global write limits, per user and per address (the
    client's, in CLIENT_HEADER from the public listener); every operation's cost (COST_HEADER)
    charged once against its client's read bucket (`limits.cost_limits`). Only the
    federation gateway may call it (INTERNAL_HEADER, checked first, `ecds.internal_hop_config`).
    The token the federation gateway passes on meets the public listener's rules again (the
    credential rule, verified if sent, its session not revoked): what is counted by, and what a
    subgraph acts as, is never taken on trust, even from a caller of this port other than the
    federation gateway."""
    routes: list[dict[str, Any]] = []
    to_subgraph = hop_headers((INTERNAL_HEADER, INTERNAL_TOKEN))
    for service in config.catalogue.graph_services():
        path = subgraph_path(service.name)
        target = {
            "cluster": graph_cluster(service.name),
            "prefix_rewrite": GRAPHQL_PATH,
            "timeout": seconds(config.route_timeout_s),
            "retry_policy": {
                "retry_on": ",".join(NEVER_ARRIVED),
                "num_retries": 2,
                "retry_host_predicate": [PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": HOST_REPICKS,
            },
        }
        mutation = [{"name": OPERATION_HEADER, "string_match": {"exact": "mutation"}}]
        if config.rate_limit:
            writes = write_limits()
            routes.append(
                {
                    "match": {"path": path, "headers": mutation},
                    "route": {**target, "rate_limits": writes},
                    "request_headers_to_add": to_subgraph,
                }
            )
        routes.append(
            {"match": {"path": path}, "route": target, "request_headers_to_add": to_subgraph}
        )
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "no such subgraph"}},
        }
    )
    manager = {
        "@type": type_url("filters.network.http_connection_manager.v3.HttpConnectionManager"),
        "stat_prefix": "subgraphs",
        "codec_type": "AUTO",
        # The client's address comes in CLIENT_HEADER, from the public listener; no
        # X-Forwarded-For is believed.
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "route_config": {
            "name": "subgraphs",
            "virtual_hosts": [
                {
                    "name": "subgraphs",
                    "domains": ["*"],
                    "routes": routes,
                    **({"typed_per_filter_config": token_if_any()} if config.auth else {}),
                }
            ],
        },
        **({"tracing": tracing(config)} if config.otlp_endpoint else {}),
        # What Envoy answers itself (a refused token, a write limit reached, no healthy
        # instance) as a GraphQL response, which the federation gateway passes on to its client.
        "local_reply_config": {
            "mappers": [
                {"filter": match, **extra, "body_format_override": graphql_error_body(code, text)}
                for match, code, text, extra in replies()
            ]
        },
        "access_log": [access_log()],
        "http_filters": [
            # Only the federation gateway's calls (INTERNAL_HEADER), then as on the public
            # listener: the credential rule, the token if sent, its session not revoked.
            from_policy_file(policy_paths(config)["internal"], "filters.http.rbac.v3.RBAC"),
            *([strip_identity_headers(), *token_filters(config)] if config.auth else []),
            reads_per_client(config, units=COST_OF_A_READ, charged=cost_limits()),
            *([global_limit(config)] if config.rate_limit else []),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": type_url("filters.http.router.v3.Router")},
            },
        ],
    }
    return listener("subgraphs", config.subgraphs_host, config.subgraphs_port, manager)
