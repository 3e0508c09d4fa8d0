"""The upstream clusters: one per service the gateway calls, its endpoints from the registry
through file-based EDS (written by `ordermesh.gateway.agent`), health-checked, with outlier
detection and mutual TLS when configured; the OTLP receiver's."""

from __future__ import annotations

from typing import Any

from ordermesh.gateway.contracts import routable_rpcs
from ordermesh.gateway.envoy.config import GatewayConfig, UpstreamTls, eds_path
from ordermesh.gateway.envoy.names import (
    AUTH_CLUSTER,
    OTLP_CLUSTER,
    RATE_LIMIT_CLUSTER,
    seconds,
    type_url,
)
from ordermesh.gateway.envoy.retries import RETRY_BUDGET

__all__ = ["cluster", "clusters_of", "companions", "health_check", "otlp_cluster"]


def cluster(name: str, config: GatewayConfig, *, http2: bool = True) -> dict[str, Any]:
    """A service's instances from their EDS file, health-checked over gRPC health; without
    `http2`, their HTTP servers (subgraphs), over HTTP/1.1, health-checked at `/healthz`,
    which says what their gRPC health does (ordermesh.metrics)."""
    protocol: dict[str, Any] = (
        {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    )
    check = {"grpc_health_check": {}} if http2 else {"http_health_check": {"path": "/healthz"}}
    return {
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {
            "eds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(eds_path(config.eds_dir, name)),
                    "watched_directory": {"path": str(config.eds_dir)},
                },
            }
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": type_url("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": protocol,
            }
        },
        "health_checks": [health_check(config, check)],
        **(
            {"transport_socket": _upstream_tls(config.upstream_tls, name)}
            if http2 and config.upstream_tls
            else {}
        ),
        "circuit_breakers": RETRY_BUDGET,
        # An instance is ejected for failing to answer (502, 503, 504: a reset, UNAVAILABLE,
        # a timeout), never for errors it answers (INTERNAL is 500): those say a request met a
        # bug, and a client could craft them to eject every instance. After 5 in a row, as the
        # 5xx rule had it: with 3, a failover run lost every auth check for 0.4 s with one auth
        # instance left, most likely ejected at the kill of the other (36 of 6,000).
        "outlier_detection": {
            "consecutive_5xx": 5,
            "enforcing_consecutive_5xx": 0,
            "consecutive_gateway_failure": 5,
            "enforcing_consecutive_gateway_failure": 100,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
    }


def _upstream_tls(tls: UpstreamTls, service: str) -> dict[str, Any]:
    """Mutual TLS to `service`'s instances: the gateway's certificate, and theirs verified
    against the CA and their name (ordermesh.tls: a certificate names its service), so that a
    call meant for one service is never answered by another. Health checks go through it."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": type_url("transport_sockets.tls.v3.UpstreamTlsContext"),
            "sni": service,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(tls.certificate)},
                        "private_key": {"filename": str(tls.key)},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(tls.ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": service}}
                    ],
                },
            },
        },
    }


def health_check(config: GatewayConfig, kind: dict[str, Any]) -> dict[str, Any]:
    interval = seconds(config.health_check_interval_s)
    return {
        "timeout": "1s",
        "interval": interval,
        "no_traffic_interval": interval,
        "unhealthy_threshold": 2,
        "healthy_threshold": 1,
        **kind,
    }


def otlp_cluster(config: GatewayConfig) -> dict[str, Any]:
    host, _, port = config.otlp_endpoint.rpartition(":")
    address = {"socket_address": {"address": host, "port_value": int(port)}}
    return {
        "name": OTLP_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": type_url("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def clusters_of(config: GatewayConfig) -> list[str]:
    """The services the gateway calls (one EDS file each)."""
    routed = {
        rpc.cluster for rpc in routable_rpcs(config.descriptor_set.read_bytes(), config.catalogue)
    }
    return sorted(routed | set(companions(config)))


def companions(config: GatewayConfig) -> list[str]:
    """The gateway's own services: the auth check and the global rate limits."""
    return ([AUTH_CLUSTER] if config.auth else []) + (
        [RATE_LIMIT_CLUSTER] if config.rate_limit else []
    )
