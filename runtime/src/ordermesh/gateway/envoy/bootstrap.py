"""Envoy's bootstrap for the gateway, composed from the package's parts: the public listener
(its routes, its filters in order, its local replies and access log), the subgraph listener
with GraphQL, and every cluster."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ordermesh.gateway.contracts import Rpc, routable_rpcs
from ordermesh.gateway.envoy.access import (
    EXT_AUTHZ_OFF,
    access_filters,
    client_address,
    strip_identity_headers,
)
from ordermesh.gateway.envoy.clusters import cluster, companions, otlp_cluster
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.faults import fault_filters
from ordermesh.gateway.envoy.graphql import graphql_cluster, graphql_route, subgraph_listener
from ordermesh.gateway.envoy.limits import global_limit, local_limit, reads_per_client
from ordermesh.gateway.envoy.listeners import downstream_tls, listener, tracing
from ordermesh.gateway.envoy.names import (
    EXT_AUTHZ_FILTER,
    IDENTITY_HEADERS,
    graph_clusters,
    hop_headers,
    seconds,
    type_url,
    web_clusters,
)
from ordermesh.gateway.envoy.replies import access_log, header_names, local_replies
from ordermesh.gateway.envoy.routes import rpc_routes, transcoder
from ordermesh.gateway.envoy.web import web_routes

__all__ = ["bootstrap"]


def bootstrap(config: GatewayConfig, rpcs: Iterable[Rpc] | None = None) -> dict[str, Any]:
    """Envoy's bootstrap for the gateway (without the admin listener: see PrivateEnvoy)."""
    rpcs = list(
        rpcs
        if rpcs is not None
        else routable_rpcs(config.descriptor_set.read_bytes(), config.catalogue)
    )
    clusters = sorted({rpc.cluster for rpc in rpcs} | set(companions(config)))
    graphql = bool(config.graphql_address)
    routes = [route for rpc in rpcs for route in rpc_routes(rpc, config)]
    if graphql:
        routes.append(graphql_route(config))
    routes += [
        route
        for service in config.catalogue.web_services()
        for route in web_routes(service, config)
    ]
    # Anything else (health, reflection, INTERNAL and undeclared RPCs, unknown paths) is
    # answered by the route table itself, without asking the auth service.
    unrouted: dict[str, Any] = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "no such route"}},
    }
    if config.auth:
        unrouted["typed_per_filter_config"] = {EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF}
    routes.append(unrouted)
    manager = {
        "@type": type_url("filters.network.http_connection_manager.v3.HttpConnectionManager"),
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        # The client's address is the connection's peer (or, for a web site of the system, the
        # browser's it names: access.client_address): X-Forwarded-For is not believed.
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "route_config": {
            "name": "gateway",
            "virtual_hosts": [
                {
                    "name": "gateway",
                    "domains": ["*"],
                    "routes": routes,
                    # A client's deadline is enforced here (max_stream_duration), not passed
                    # on: a service answering DEADLINE_EXCEEDED (504) to a crafted
                    # `grpc-timeout: 1n` would count as an instance failing, and eject it.
                    "request_headers_to_remove": ["grpc-timeout", *IDENTITY_HEADERS],
                    # Browsers that once reached it over HTTPS never try plaintext again.
                    **(
                        {
                            "response_headers_to_add": hop_headers(
                                ("strict-transport-security", f"max-age={config.hsts_max_age_s}")
                            )
                        }
                        if config.tls
                        else {}
                    ),
                }
            ],
        },
        **({"tracing": tracing(config)} if config.otlp_endpoint else {}),
        "local_reply_config": local_replies(graphql),
        "access_log": [access_log()],
        # A slow or greedy client holds a stream or a connection only this long, and sends
        # only this much (see GatewayConfig).
        "request_headers_timeout": seconds(config.request_headers_timeout_s),
        "request_timeout": seconds(config.request_timeout_s),
        "stream_idle_timeout": seconds(config.stream_idle_timeout_s),
        "max_request_headers_kb": config.max_request_headers_kb,
        "common_http_protocol_options": {
            "idle_timeout": seconds(config.connection_idle_timeout_s),
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": config.max_streams_per_connection,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1048576,
        },
        "http_filters": [
            # The body's size, then transcoding, so the access filters see REST calls as their
            # gRPC paths, then the limits, as they count calls by the verified user: each
            # client's first, then the floor shared by all (a busy client's excess is refused
            # by its own limit and never spends the floor: with the floor first, 21 clients at
            # their read limit got everyone 429).
            client_address(),
            strip_identity_headers(),
            header_names(),
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": type_url("filters.http.buffer.v3.Buffer"),
                    "max_request_bytes": config.max_request_bytes,
                },
            },
            transcoder(rpcs, config),
            *(access_filters(config) if config.auth else []),
            reads_per_client(config),
            *([global_limit(config)] if config.rate_limit else []),
            local_limit(config),
            # What the fault switches inject, on calls every filter before let through.
            *fault_filters(config),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": type_url("filters.http.router.v3.Router")},
            },
        ],
    }
    return {
        # File-based EDS needs a node identity.
        "node": {"id": "gateway", "cluster": "gateway"},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": type_url(
                            "resource_monitors.downstream_connections.v3."
                            "DownstreamConnectionsConfig"
                        ),
                        "max_active_downstream_connections": config.max_connections,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                listener(
                    "gateway",
                    config.host,
                    config.port,
                    manager,
                    tls=downstream_tls(config) if config.tls else None,
                ),
                *([subgraph_listener(config)] if graphql else []),
            ],
            "clusters": [
                *(cluster(name, config) for name in clusters),
                *(
                    [graphql_cluster(config)]
                    + [
                        cluster(name, config, http2=False)
                        for name in graph_clusters(config.catalogue)
                    ]
                    if graphql
                    else []
                ),
                *(cluster(name, config, http2=False) for name in web_clusters(config.catalogue)),
                *([otlp_cluster(config)] if config.otlp_endpoint else []),
            ],
        },
    }
