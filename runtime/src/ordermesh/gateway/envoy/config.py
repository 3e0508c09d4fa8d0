"""The gateway's settings (`GatewayConfig`: every choice the rendered configuration leaves to
its operator, each field with its reason) and where the files its agent writes live: one EDS
file per cluster (`eds_path`), one policy file per filter the edge policy configures
(`policy_paths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ordermesh.catalogue import Catalogue
from ordermesh.gateway.envoy.names import (
    INTERNAL_FILTER,
    JWT_FILTER,
    REVOCATIONS_FILTER,
    SUBGRAPHS_PORT,
)
from ordermesh.tokens import CLOCK_SKEW_S

__all__ = ["GatewayConfig", "UpstreamTls", "eds_path", "policy_paths"]


@dataclass(frozen=True)
class UpstreamTls:
    certificate: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class GatewayConfig:
    port: int
    # Where the gateway's agent writes one EDS file per service.
    eds_dir: Path
    # The project's services, and its contracts as a descriptor set (with their imports), where
    # Envoy reads it.
    catalogue: Catalogue
    descriptor_set: Path
    host: str = "127.0.0.1"
    health_check_interval_s: float = 1.0
    route_timeout_s: float = 15.0
    max_connections: int = 10_000
    # Where the gateway's agent writes the policy files (ordermesh.gateway.policy).
    policy_dir: Path = Path("policy")
    # Tokens are verified (and revocations, roles and policy checks applied); the policy
    # checks are made by the auth service (ext_authz), registered as service "auth".
    auth: bool = True
    auth_timeout_s: float = 0.5
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"
    # Tokens whose exp is further than this from their iat are refused, whoever signed them.
    max_token_lifetime_s: int = 3600
    clock_skew_s: int = CLOCK_SKEW_S
    verified_tokens_cached: int = 10_000
    # Global limits (the rate-limit service, registered as "ratelimit"), shared by every
    # gateway using the same domain; and each gateway's own floor, in requests per second.
    rate_limit: bool = True
    rate_limit_domain: str = "ordermesh"
    rate_limit_timeout_s: float = 0.25
    local_limit_per_s: int = 1000
    # Reads per client (the verified user, else the client's address), in this gateway: a
    # token bucket per client, counted in Envoy (no hop), refilled every second. The floor
    # above is shared by all clients and must stay above what one client may take.
    reads_per_client_per_s: int = 50
    read_burst_per_client: int = 100
    # What one client may take of the gateway (Envoy's edge guidance): time to send a request's
    # headers (408 after), and the whole request; how long a stream or a connection may stay
    # idle; the largest request body (413) and headers (431); streams at once per connection.
    request_headers_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    stream_idle_timeout_s: float = 30.0
    connection_idle_timeout_s: float = 60.0
    max_request_bytes: int = 64 * 1024
    max_request_headers_kb: int = 32
    max_streams_per_connection: int = 100
    # host:port of the GraphQL federation gateway (gateway/graphql) that `/graphql` leads to;
    # empty: no GraphQL. It reaches the subgraphs through the subgraph listener, on the
    # loopback address unless the federation gateway runs elsewhere (another container of a
    # Compose network): no client should be able to reach it.
    graphql_address: str = ""
    subgraphs_host: str = "127.0.0.1"
    subgraphs_port: int = SUBGRAPHS_PORT
    # HTTPS and gRPC over TLS on `port`, from these files (PEM; a deployment's secret), with
    # HSTS; both None: plaintext, only where the operator asks for it (the tests, a gateway
    # behind a TLS-terminating load balancer).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hsts_max_age_s: int = 365 * 86400
    # Mutual TLS to the services (when they run with GRPC_TLS_*, ordermesh.tls): the gateway's
    # client certificate, its key and the CA that signs every service's; each service's
    # certificate must name it (DNS SAN `<service>`). None: plaintext to the services.
    upstream_tls: UpstreamTls | None = None
    # host:port of an OTLP/gRPC receiver: Envoy then traces every request (a span of its own,
    # and one per call upstream), propagating W3C trace context to the services.
    otlp_endpoint: str = ""
    trace_sampling_percent: float = 100.0

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (tls_cert, tls_key)")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def eds_path(eds_dir: Path, cluster: str) -> Path:
    return eds_dir / f"{cluster}.json"


def policy_paths(config: GatewayConfig) -> dict[str, Path]:
    """The policy files (ECDS), each named after the filter it configures. Binary protobuf
    (Envoy reads a file by its extension): Envoy applies 10,000 revocations in 60-80 ms from
    one, 140-170 ms from JSON (docs/performance.md)."""
    return {
        "jwt": config.policy_dir / f"{JWT_FILTER}.pb",
        "revocations": config.policy_dir / f"{REVOCATIONS_FILTER}.pb",
        "internal": config.policy_dir / f"{INTERNAL_FILTER}.pb",
    }
