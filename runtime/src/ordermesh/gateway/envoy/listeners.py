"""A listener around an HTTP connection manager, HTTPS and gRPC over TLS on the public one, and
tracing (a span per request, and one per call upstream, to an OTLP receiver)."""

from __future__ import annotations

from typing import Any

from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.names import OTLP_CLUSTER, type_url

__all__ = ["downstream_tls", "listener", "tracing"]


def listener(
    name: str, host: str, port: int, manager: dict[str, Any], *, tls: dict[str, Any] | None = None
) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if tls is not None:
        chain["transport_socket"] = tls
    return {
        "name": name,
        "address": {"socket_address": {"address": host, "port_value": port}},
        "per_connection_buffer_limit_bytes": 32768,
        "filter_chains": [chain],
    }


def downstream_tls(config: GatewayConfig) -> dict[str, Any]:
    """HTTPS and gRPC over TLS (ALPN: HTTP/2, then HTTP/1.1), TLS 1.2 at least, with the
    certificate and key of the files the configuration names (a deployment's secret)."""
    certificate = {
        "certificate_chain": {"filename": str(config.tls_cert)},
        "private_key": {"filename": str(config.tls_key)},
    }
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": type_url("transport_sockets.tls.v3.DownstreamTlsContext"),
            "common_tls_context": {
                "tls_certificates": [certificate],
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            },
        },
    }


def tracing(config: GatewayConfig) -> dict[str, Any]:
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": "1s"},
                "service_name": "gateway",
            },
        },
        "random_sampling": {"value": config.trace_sampling_percent},
    }
