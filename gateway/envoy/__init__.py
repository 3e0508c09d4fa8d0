"""The gateway's Envoy configuration, generated from the contracts (never written by hand).

What the contracts decide, read from the descriptor set `make gen` builds (gen/descriptors.pb):
- which RPCs are routable from outside: those whose `(common.v1.access)` is PUBLIC,
  AUTHENTICATED or ADMIN; INTERNAL ones and ones declaring no level are not routed, and
  neither is anything else (health, reflection, unknown paths): 404;
- the REST API: every RPC with a `google.api.http` rule, transcoded to gRPC by Envoy's
  grpc_json_transcoder, with errors as JSON bodies carrying the gRPC status and message;
- which calls Envoy may retry: every call when the request never reached an instance
  (connection failure, refused stream); reads (HTTP GET rules) and the writes a service
  deduplicates (their request carries an `idempotency_key`, which the service requires) also
  on UNAVAILABLE or a reset, as when the instance died during the call;
- how often: a local token bucket per gateway as a floor, then global limits shared by every
  gateway (sign-in attempts per client address, writes per user and per address), counted by
  the rate-limit service, failing open;
- who may call, decided in Envoy without a hop (docs/decisions.md, "Edge auth"): on
  AUTHENTICATED and ADMIN routes the bearer token is verified by jwt_authn (EdDSA keys only,
  issuer, audience and expiry required, a maximum lifetime, verified tokens cached), then its
  session is looked up in the revoked sessions (an RBAC hash lookup), then on ADMIN routes
  the verified roles must hold "admin" (RBAC on the token's claims); the key set and the
  revoked sessions are ECDS files the gateway's agent keeps in step with the auth service's
  policy (gateway.policy), applied without a restart. RPCs whose contract asks for
  `(common.v1.policy_check)` are also checked by the auth service on every call (ext_authz),
  failing closed (503). Clients' copies of the headers Envoy writes from a verified token
  are removed first;
- what callers of a deprecated API are told: its `(common.v1.api_lifecycle)` puts the
  Deprecation and Sunset headers in every answer of its routes (chassis.lifecycle);
- the upstream clusters: one per service (the package's first part: `order.v1` -> `order`),
  its endpoints from the registry through file-based EDS (`gateway.agent` writes the
  files), health-checked over gRPC health, with outlier detection;
- GraphQL, with `graphql_address`: `/graphql` to the federation gateway (gateway/graphql),
  with the edge auth and read limits of REST and GraphQL-shaped refusals, and a subgraph
  listener through which it calls each service's subgraph (a `<service>-graph` cluster of
  the instances' HTTP servers), counting mutations against the global write limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from common.v1 import options_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_authn_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2 as xds_extension_pb2

from chassis import pages
from chassis.identity import INTERNAL_HEADER
from chassis.tokens import CLOCK_SKEW_S
from gateway.contracts import DESCRIPTOR_SET, Rpc, routable_rpcs
from services.catalogue import BY_ADDRESS, BY_USER, LIMIT_CLASS, Limit, graph_services

__all__ = [
    "GRAPHQL_PATH",
    "INTERNAL_HEADER",
    "OPERATION_HEADER",
    "SUBGRAPHS_PORT",
    "GatewayConfig",
    "Rpc",
    "UpstreamTls",
    "bootstrap",
    "eds_path",
    "graph_cluster",
    "graph_clusters",
    "jwt_authn_config",
    "policy_paths",
    "revocations_config",
    "routable_rpcs",
    "subgraph_path",
]

# Written by Envoy from a verified token, after removing any copy a client sent: the caller's
# user id (what per-user rate limits count by) and session id (what revocations match).
# Services never read them: they verify the token themselves (chassis.identity).
USER_HEADER = "x-ordermesh-user"
SESSION_HEADER = "x-ordermesh-session"
IDENTITY_HEADERS = (USER_HEADER, SESSION_HEADER)
# The internal hops of GraphQL (Envoy -> the federation gateway -> the subgraph listener -> a
# service's subgraph) carry a secret every part of the system is given (INTERNAL_TOKEN, which
# Envoy reads from its environment and the agent writes into the subgraph listener's check):
# each hop refuses a caller without it, so a port reachable on the host or in the network is
# not a door around the gateway. And the client's address as the public listener saw it,
# which the write limits count by: never a header the client wrote (X-Forwarded-For).
CLIENT_HEADER = "x-ordermesh-client"
INTERNAL_TOKEN = "%ENVIRONMENT(INTERNAL_TOKEN)%"
INTERNAL_FILTER = "ordermesh.internal"
HOP_HEADERS = (INTERNAL_HEADER, CLIENT_HEADER)
# The filters whose configuration comes from the policy files (gateway.policy), by file.
JWT_FILTER = "ordermesh.jwt_authn"
REVOCATIONS_FILTER = "ordermesh.revocations"
ADMIN_FILTER = "ordermesh.admin"
CREDENTIALS_FILTER = "ordermesh.credentials"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
# jwt_authn's requirements: a valid token from the issuer; a valid one if any is sent (GraphQL,
# where public fields need none); and where it puts the claims.
TOKEN_REQUIREMENT = "token"
TOKEN_IF_ANY = "token_if_any"
PROVIDER = "issuer"
CLAIMS_METADATA = "claims"
# The gateway's own services (besides those its routes lead to).
AUTH_CLUSTER = "auth"
RATE_LIMIT_CLUSTER = "ratelimit"
# The auth and rate-limit checks are idempotent: one that failed on an instance that died (and
# that health checks have not caught yet) is tried on another.
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host."
        "previous_hosts.v3.PreviousHostsPredicate"
    },
}
# How often a retry may pick again when it picked a host it already tried. Envoy's default is
# once, after which the host picked is used: with two instances, one just killed, a retry could
# land on the dead one again, and both retries of a call did in a failover test run (20 of 6,000
# answered 503 "remote connection failure").
HOST_REPICKS = 5
# How many retries may be under way at once, per cluster. Envoy's default is 3: when an instance
# dies, the calls in flight on it and those sent to it before it is ejected all need a retry at
# that moment, and those over 3 failed at once (seen in the failover test: a failed auth check
# in 0 ms; a kill test with 300 checks/s lost 31 of 1,500 to refused retries, none with this).
RETRY_BUDGET = {
    "thresholds": [
        {"retry_budget": {"budget_percent": {"value": 50.0}, "min_retry_concurrency": 20}}
    ]
}
GRPC_RETRIES = {
    "retry_on": "connect-failure,refused-stream,reset,unavailable",
    "num_retries": 3,
    "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": HOST_REPICKS,
}
# GraphQL: the federation gateway (Hive Gateway, gateway/graphql) serves the public route; it
# reaches each service's subgraph through the subgraph listener, at `subgraph_path(service)`,
# on this port where compose.yaml runs it (make up and the tests pick free ones).
GRAPHQL_PATH = "/graphql"
SUBGRAPHS_PORT = 8081


def subgraph_path(service: str) -> str:
    return f"{GRAPHQL_PATH}/{service}"


# What a call may always be retried on: it never reached an instance.
NEVER_ARRIVED = ("connect-failure", "refused-stream", "reset-before-request")
# What Envoy answers itself (the transcoder's rejections, no healthy upstream, ...) as the same
# JSON as the services' errors: {"code": <gRPC code>, "message": ...}, by HTTP status.
GRPC_CODE_OF_STATUS = {
    400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 8, 429: 8, 431: 8, 502: 14, 503: 14, 504: 4
}  # fmt: skip


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
    host: str = "127.0.0.1"
    descriptor_set: Path = DESCRIPTOR_SET
    health_check_interval_s: float = 1.0
    route_timeout_s: float = 15.0
    max_connections: int = 10_000
    # Where the gateway's agent writes the policy files (gateway.policy).
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
    # Mutual TLS to the services (when they run with GRPC_TLS_*, chassis.tls): the gateway's
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


def jwt_authn_config(config: GatewayConfig, jwks: Mapping[str, Any]) -> Message:
    """jwt_authn verifying the issuer's tokens against `jwks`, which holds only the EdDSA keys
    the auth service accepted (services.auth.service): a token naming another algorithm (none,
    HS256 with a public key, RS256) finds no key."""
    provider = {
        "issuer": config.jwt_issuer,
        "audiences": [config.jwt_audience],
        "local_jwks": {"inline_string": json.dumps(jwks, sort_keys=True)},
        "require_expiration": True,
        "max_lifetime": _seconds(config.max_token_lifetime_s),
        "clock_skew_seconds": config.clock_skew_s,
        # Only from `authorization: Bearer <token>` (jwt_authn also reads `?access_token=` by
        # default: a token in a URL is refused before, see `_credentials`).
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        # The services verify the token again (chassis.identity): it goes on to them.
        "forward": True,
        "claim_to_headers": [
            {"header_name": USER_HEADER, "claim_name": "sub"},
            {"header_name": SESSION_HEADER, "claim_name": "sid"},
        ],
        "payload_in_metadata": CLAIMS_METADATA,
        "jwt_cache_config": {"jwt_cache_size": config.verified_tokens_cached},
    }
    jwt_authn = jwt_authn_pb2.JwtAuthentication()
    json_format.ParseDict(
        {
            "providers": {PROVIDER: provider},
            "requirement_map": {
                TOKEN_REQUIREMENT: {"provider_name": PROVIDER},
                TOKEN_IF_ANY: {
                    "requires_any": {
                        "requirements": [{"provider_name": PROVIDER}, {"allow_missing": {}}]
                    }
                },
            },
        },
        jwt_authn,
    )
    return cast(Message, jwt_authn)


# The RBAC action name a revoked session's denial carries (Envoy's response code details say
# `rbac_access_denied_matched_policy[revoked]`, which the local replies turn into a 401).
REVOKED = "revoked"


def revocations_config(revoked: Mapping[str, Any]) -> Message:
    """RBAC denying the sessions in `revoked`: one hash lookup of the session header, however
    many there are (a list of principals would be a linear scan; see ../shared/NOTES.md).
    Built as protobuf, not parsed from a dict: 14 ms for 10,000 sessions."""
    rbac = rbac_pb2.RBAC()
    if not revoked:  # Envoy refuses an empty map; no rules at all means no denial
        return cast(Message, rbac)
    tree = rbac.matcher.matcher_tree
    tree.input.name = "session"
    tree.input.typed_config.Pack(
        http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=SESSION_HEADER)
    )
    deny = _rbac_action(REVOKED, rbac_config_pb2.RBAC.DENY)
    sessions = tree.exact_match_map.map
    for session in revoked:
        sessions[session].action.CopyFrom(deny)
    rbac.matcher.on_no_match.action.CopyFrom(_rbac_action("allow", rbac_config_pb2.RBAC.ALLOW))
    return cast(Message, rbac)


# The RBAC policy name of a refused internal hop (answered 401, `_replies`).
INTERNAL_HOP = "internal-hop"


def internal_hop_config(token: str) -> Message:
    """RBAC refusing a call to the subgraph listener that does not carry `token` in
    INTERNAL_HEADER (no token known yet: every call)."""
    caller = (
        {"not_id": {"header": {"name": INTERNAL_HEADER, "string_match": {"exact": token}}}}
        if token
        else {"any": True}
    )
    rbac = rbac_pb2.RBAC()
    json_format.ParseDict(
        {
            "rules": {
                "action": "DENY",
                "policies": {
                    INTERNAL_HOP: {"permissions": [{"any": True}], "principals": [caller]}
                },
            }
        },
        rbac,
    )
    return cast(Message, rbac)


def _rbac_action(name: str, action: int) -> xds_extension_pb2.TypedExtensionConfig:
    config = xds_extension_pb2.TypedExtensionConfig(name=name)
    config.typed_config.Pack(rbac_config_pb2.Action(name=name, action=action))
    return config


def _type(extension: str) -> str:
    """The type URL of an Envoy extension's config, e.g. "filters.http.router.v3.Router"."""
    return f"type.googleapis.com/envoy.extensions.{extension}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _descriptor(klass: Limit, by: dict[str, Any]) -> dict[str, Any]:
    return {
        "actions": [
            {"generic_key": {"descriptor_key": LIMIT_CLASS, "descriptor_value": klass.value}},
            by,
        ]
    }


# The stage of the per-client read limits (Envoy's local limit filter after the auth check);
# the global limits are stage 0.
READS_STAGE = 1


def _rate_limits(rpc: Rpc, config: GatewayConfig) -> list[dict[str, Any]]:
    """The limits a call counts against. Global (the rate-limit service): sign-in attempts
    (public writes: Register, Login, RefreshToken, Logout) per client address; other writes per
    user and per address. Local (Envoy, READS_STAGE): reads per verified user, or per address
    for a caller without a token (clients' copies of the header are removed first)."""
    if rpc.is_read:
        return _read_limits()
    if not config.rate_limit:
        return []
    if rpc.access == options_pb2.ACCESS_PUBLIC:
        return [_descriptor(Limit.SIGN_IN, BY_ADDRESS_ACTION)]
    return _write_limits()


BY_ADDRESS_ACTION: dict[str, Any] = {BY_ADDRESS: {}}
BY_USER_ACTION = {"request_headers": {"header_name": USER_HEADER, "descriptor_key": BY_USER}}


def _read_limits() -> list[dict[str, Any]]:
    """Reads per verified user, or per address for a caller without a token."""
    anonymous = {
        "header_value_match": {
            "descriptor_key": LIMIT_CLASS,
            "descriptor_value": Limit.READ_BY_ADDRESS.value,
            "expect_match": False,
            "headers": [{"name": USER_HEADER, "present_match": True}],
        }
    }
    return [
        {"stage": READS_STAGE, **_descriptor(Limit.READ_BY_USER, BY_USER_ACTION)},
        {"stage": READS_STAGE, "actions": [anonymous, BY_ADDRESS_ACTION]},
    ]


# Behind the federation gateway: the client's address as the public listener saw it.
CLIENT_ACTION = {"request_headers": {"header_name": CLIENT_HEADER, "descriptor_key": BY_ADDRESS}}


def _cost_limits() -> list[dict[str, Any]]:
    """A GraphQL operation's cost, charged once (at its first call) against its client's read
    bucket: the verified user's, or the address's the public listener saw for a caller without
    a token (the reads of `_read_limits`, behind the federation gateway)."""
    first_call = {"name": CALL_HEADER, "string_match": {"exact": "1"}}

    def first_of(klass: Limit, *headers: dict[str, Any]) -> dict[str, Any]:
        return {
            "header_value_match": {
                "descriptor_key": LIMIT_CLASS,
                "descriptor_value": klass.value,
                "headers": [first_call, *headers],
            }
        }

    cost = {"format": f"%REQ({COST_HEADER})%"}
    anonymous = {"name": USER_HEADER, "present_match": False}
    return [
        {"actions": [first_of(Limit.READ_BY_USER), BY_USER_ACTION], "hits_addend": cost},
        {"actions": [first_of(Limit.READ_BY_ADDRESS, anonymous), CLIENT_ACTION],
         "hits_addend": cost},
    ]  # fmt: skip


def _write_limits(by_address: dict[str, Any] = BY_ADDRESS_ACTION) -> list[dict[str, Any]]:
    return [_descriptor(Limit.WRITE, BY_USER_ACTION), _descriptor(Limit.WRITE, by_address)]


def _route(rpc: Rpc, config: GatewayConfig) -> dict[str, Any]:
    retry_on = list(NEVER_ARRIVED)
    if rpc.retry_safe:
        retry_on += ["unavailable", "reset"]
    limits = _rate_limits(rpc, config)
    route: dict[str, Any] = {
        "match": {"path": rpc.path},
        "route": {
            **({"rate_limits": limits} if limits else {}),
            "cluster": rpc.cluster,
            "timeout": _seconds(config.route_timeout_s),
            # A client's grpc-timeout, if shorter, is the call's deadline.
            "max_stream_duration": {"grpc_timeout_header_max": _seconds(config.route_timeout_s)},
            "retry_policy": {
                "retry_on": ",".join(retry_on),
                "num_retries": 2,
                "retry_host_predicate": [PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": HOST_REPICKS,
            },
        },
    }
    if config.auth:
        route["typed_per_filter_config"] = _access_of(rpc)
    if rpc.answer_headers:
        route["response_headers_to_add"] = [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in rpc.answer_headers
        ]
    return route


# On ADMIN routes: the verified token's roles must hold "admin" (jwt_authn put its claims in
# the request's dynamic metadata).
ADMIN = {"string_match": {"exact": "admin"}}
ADMIN_ROLE = {
    "rules": {
        "action": "ALLOW",
        "policies": {
            "admin": {
                "permissions": [{"any": True}],
                "principals": [
                    {
                        "sourced_metadata": {
                            "metadata_matcher": {
                                "filter": "envoy.filters.http.jwt_authn",
                                "path": [{"key": CLAIMS_METADATA}, {"key": "roles"}],
                                "value": {
                                    "list_match": {"one_of": {"string_match": {"exact": "admin"}}}
                                },
                            }
                        }
                    }
                ],
            }
        },
    }
}


EXT_AUTHZ_OFF = {"@type": _type("filters.http.ext_authz.v3.ExtAuthzPerRoute"), "disabled": True}


def _access_of(rpc: Rpc) -> dict[str, Any]:
    """The per-route configuration of the access filters: a token required on AUTHENTICATED
    and ADMIN routes, the admin role on ADMIN ones, the auth service's check where the
    contract asks for it."""
    jwt: dict[str, Any] = {"@type": _type("filters.http.jwt_authn.v3.PerRouteConfig")}
    if rpc.access == options_pb2.ACCESS_PUBLIC:
        jwt["disabled"] = True
    else:
        jwt["requirement_name"] = TOKEN_REQUIREMENT
    filters: dict[str, Any] = {JWT_FILTER: jwt}
    if rpc.access == options_pb2.ACCESS_ADMIN:
        filters[ADMIN_FILTER] = {
            "@type": _type("filters.http.rbac.v3.RBACPerRoute"),
            "rbac": ADMIN_ROLE,
        }
    if not rpc.policy_check:
        filters[EXT_AUTHZ_FILTER] = EXT_AUTHZ_OFF
    return filters


def _cluster(name: str, config: GatewayConfig, *, http2: bool = True) -> dict[str, Any]:
    """A service's instances from their EDS file, health-checked over gRPC health; without
    `http2`, their HTTP servers (subgraphs), over HTTP/1.1, health-checked at `/healthz`,
    which says what their gRPC health does (chassis.metrics)."""
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
                "@type": _type("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": protocol,
            }
        },
        "health_checks": [_health_check(config, check)],
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
    against the CA and their name (chassis.tls: a certificate names its service), so that a
    call meant for one service is never answered by another. Health checks go through it."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _type("transport_sockets.tls.v3.UpstreamTlsContext"),
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


def _health_check(config: GatewayConfig, kind: dict[str, Any]) -> dict[str, Any]:
    interval = _seconds(config.health_check_interval_s)
    return {
        "timeout": "1s",
        "interval": interval,
        "no_traffic_interval": interval,
        "unhealthy_threshold": 2,
        "healthy_threshold": 1,
        **kind,
    }


def _status_is(status: int, op: str = "EQ") -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"gateway.status.{op.lower()}.{status}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _limited_by(limit: str) -> dict[str, Any]:
    """A 429 of one of Envoy's own limits (LIMIT_HEADER)."""
    return _cel(f"response.headers[{json.dumps(LIMIT_HEADER)}] == {json.dumps(limit)}")


def _details_start(prefix: str) -> dict[str, Any]:
    """A local reply whose response code details start with `prefix`."""
    return _cel(f"response.code_details.startsWith({json.dumps(prefix)})")


def _cel(expression: str) -> dict[str, Any]:
    """A local reply for which a CEL expression holds."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _type("access_loggers.filters.cel.v3.ExpressionFilter"),
                "expression": expression,
            },
        }
    }


LIMITED = "too many requests: try again after the seconds in Retry-After"
# Set on the 429 of each of Envoy's own limits, so that a client (and the local reply's
# message) can tell its own limit from the gateway's floor.
LIMIT_HEADER = "x-ordermesh-limit"
PER_CLIENT, FLOOR = "per-client", "gateway"
LIMIT_MESSAGES = {
    PER_CLIENT: "too many reads from this client: try again after the seconds in Retry-After",
    FLOOR: "the gateway is at its capacity for everyone: try again after the seconds in "
    "Retry-After",
}


Reply = tuple[dict[str, Any], int, str, dict[str, Any]]


def _replies() -> list[Reply]:
    """Envoy's own answers, each (which reply, its gRPC code, its message, what else it sets),
    the first that matches."""
    # The auth check could not be made (no instance answered in time, or one could not verify
    # tokens): Envoy's own reply has no text.
    unchecked = "cannot check credentials now: the auth service is unavailable; try again"
    auth_failed = {
        "and_filter": {"filters": [_status_is(503), {"response_flag_filter": {"flags": ["UAEX"]}}]}
    }

    def challenge(value: str) -> list[dict[str, Any]]:
        header = {"key": "www-authenticate", "value": value}
        return [{"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]

    # Every refused token is a 401 (jwt_authn answers 403 for a wrong audience) with the
    # challenge of RFC 6750: no error code without a token, invalid_token otherwise.
    invalid_token = challenge('Bearer error="invalid_token"')
    unauthenticated = {"status_code": 401, "headers_to_add": invalid_token}
    return [
        (auth_failed, 14, unchecked, {}),
        # Which access filter refused, from Envoy's response code details.
        (
            _details_start("jwt_authn_access_denied{Jwt_is_missing}"),
            16,
            "no access token: send 'authorization: Bearer <token>'",
            {"status_code": 401, "headers_to_add": challenge("Bearer")},
        ),
        (
            _details_start("jwt_authn_access_denied"),
            16,
            "the access token was refused: %LOCAL_REPLY_BODY%",
            unauthenticated,
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{CREDENTIALS}]"),
            16,
            "send one access token, as 'authorization: Bearer <token>', and never in a URL",
            unauthenticated,
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{INTERNAL_HOP}]"),
            16,
            "this port takes calls from the gateway only",
            {"status_code": 401},
        ),
        (
            _details_start(f"rbac_access_denied_matched_policy[{REVOKED}]"),
            16,
            "this session was ended: log in again",
            unauthenticated,
        ),
        (_details_start("rbac_access_denied"), 7, "this RPC is for administrators only", {}),
        *((_limited_by(limit), 8, message, {}) for limit, message in LIMIT_MESSAGES.items()),
        *(
            (_status_is(status), code, LIMITED if status == 429 else "%LOCAL_REPLY_BODY%", {})
            for status, code in GRPC_CODE_OF_STATUS.items()
        ),
    ]


def _local_replies(graphql: bool) -> dict[str, Any]:
    """Envoy's own answers as the services' errors: JSON with the gRPC code and a message; on
    `/graphql` (with `graphql`), a GraphQL response whose error has them in `extensions`."""
    replies = _replies()
    mappers = [
        {"filter": match, **extra, "body_format_override": _error_body(code, message)}
        for match, code, message, extra in replies
    ]
    if graphql:
        on_graphql = {
            "header_filter": {
                "header": {
                    "name": ":path",
                    "string_match": {"safe_regex": {"regex": f"^{GRAPHQL_PATH}(\\?.*)?$"}},
                }
            }
        }
        mappers[:0] = [
            {
                "filter": {"and_filter": {"filters": [on_graphql, match]}},
                **extra,
                "body_format_override": _graphql_error_body(code, message),
            }
            for match, code, message, extra in replies
        ]
    return {"mappers": mappers}


def _error_body(code: int, message: str) -> dict[str, Any]:
    return {"json_format": {"code": code, "message": message, "details": []}}


def _graphql_error_body(code: int, message: str) -> dict[str, Any]:
    """A GraphQL response with one error, its gRPC status in `extensions` as the subgraphs'
    errors have it (chassis.graphql)."""
    name = next(c.name for c in grpc.StatusCode if c.value[0] == code)
    error = {"message": message, "extensions": {"code": name, "grpcStatus": code}}
    return {"json_format": {"errors": [error]}}


def _access_log() -> dict[str, Any]:
    """The requests that failed (status 400 or more, or a flag set by Envoy: no healthy
    upstream, a reset, an auth check that failed, ...), a JSON line each on Envoy's stdout.
    Successful ones are not logged: at thousands per second the log would cost more than the
    gateway's own work (bench/gateway.py)."""
    return {
        "name": "envoy.access_loggers.stdout",
        "filter": {"or_filter": {"filters": [_status_is(400, "GE"), {"response_flag_filter": {}}]}},
        "typed_config": {
            "@type": _type("access_loggers.stream.v3.StdoutAccessLog"),
            "log_format": {
                "json_format": {
                    "time": "%START_TIME%",
                    "request_id": "%REQ(X-REQUEST-ID)%",
                    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    # As the client sent it, and the RPC it was routed as (the same when it
                    # was not transcoded); the transcoder makes every method POST.
                    # Without the query: nothing of a URL's query is logged (a token sent there
                    # by mistake, refused, would be).
                    "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                    "rpc": "%REQ_WITHOUT_QUERY(:PATH)%",
                    "status": "%RESPONSE_CODE%",
                    "grpc_status": "%GRPC_STATUS%",
                    "flags": "%RESPONSE_FLAGS%",
                    "details": "%RESPONSE_CODE_DETAILS%",
                    "upstream": "%UPSTREAM_HOST%",
                    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                    "duration_ms": "%DURATION%",
                },
                "formatters": [
                    {
                        "name": "envoy.formatter.req_without_query",
                        "typed_config": {
                            "@type": _type("formatter.req_without_query.v3.ReqWithoutQuery")
                        },
                    }
                ],
            },
        },
    }


# gRPC metadata keys are lowercase letters, digits, "-", "_" and "."; HTTP allows names with
# more (` ' ! # $ % & * + ^ | ~), which a gRPC server refuses with INTERNAL: refused here, 400
# (names with "_" are refused before, by headers_with_underscores_action).
HEADER_NAMES = """
function envoy_on_request(handle)
  for name, _ in pairs(handle:headers()) do
    if name:sub(1, 1) ~= ":" and not name:match("^[0-9a-z_.%-]+$") then
      handle:respond({[":status"] = "400"}, "a header name has characters gRPC metadata " ..
        "cannot carry: use letters, digits, '-' and '.'")
      return
    end
  end
end
"""


def _header_names() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": _type("filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": HEADER_NAMES.strip()},
        },
    }


def _transcoder(rpcs: Sequence[Rpc], config: GatewayConfig) -> dict[str, Any]:
    return {
        "name": TRANSCODER,
        "typed_config": {
            "@type": _type("filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"),
            "proto_descriptor": str(config.descriptor_set),
            "services": sorted({rpc.service for rpc in rpcs if rpc.http_verb}),
            "print_options": {
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": False,
            },
            # gRPC errors become JSON bodies: {"code": 5, "message": "...", "details": []}.
            "convert_grpc_status": True,
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
        },
    }


def _ext_authz(config: GatewayConfig) -> dict[str, Any]:
    """The auth service's check, disabled on the routes whose contract does not ask for it."""
    return {
        "name": EXT_AUTHZ_FILTER,
        "typed_config": {
            "@type": _type("filters.http.ext_authz.v3.ExtAuthz"),
            "transport_api_version": "V3",
            "grpc_service": {
                "envoy_grpc": {"cluster_name": AUTH_CLUSTER},
                "timeout": _seconds(config.auth_timeout_s),
                "retry_policy": GRPC_RETRIES,
            },
            # Fail closed: no answer from the auth service is a 503, never a pass.
            "failure_mode_allow": False,
            "status_on_error": {"code": 503},
            "allowed_headers": {"patterns": [{"exact": "authorization"}]},
        },
    }


def _from_policy_file(path: Path, extension: str) -> dict[str, Any]:
    """A filter configured by a policy file (ECDS), reloaded when the file is replaced."""
    return {
        "name": path.stem,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(path),
                    "watched_directory": {"path": str(path.parent)},
                },
            },
            "type_urls": [_type(extension)],
        },
    }


JWT = "filters.http.jwt_authn.v3.JwtAuthentication"


def _token_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    """The credential rule, the token (verified where a route asks), its session not revoked."""
    paths = policy_paths(config)
    return [
        _credentials(),
        _from_policy_file(paths["jwt"], JWT),
        _from_policy_file(paths["revocations"], "filters.http.rbac.v3.RBAC"),
    ]


def _access_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    """The token's filters, the admin role, then the auth service's check (see the module
    doc)."""
    return [
        *_token_filters(config),
        # No rules but on ADMIN routes. (Not a filter disabled but on some routes: Envoy
        # decides that from the route before transcoding, and a REST path has none.)
        {"name": ADMIN_FILTER, "typed_config": {"@type": _type("filters.http.rbac.v3.RBAC")}},
        _ext_authz(config),
    ]


def _strip_identity_headers(*, hops: bool = True) -> dict[str, Any]:
    """Removes clients' copies of the headers Envoy writes from a verified token, and with
    `hops` (the public listener) those of the internal hops."""
    names = IDENTITY_HEADERS + (HOP_HEADERS if hops else ())
    return {
        "name": "ordermesh.strip_identity_headers",
        "typed_config": {
            "@type": _type("filters.http.header_mutation.v3.HeaderMutation"),
            "mutations": {"request_mutations": [{"remove": name} for name in names]},
        },
    }


# The credential rule (the same in every service, chassis.tokens.bearer_token): one
# `authorization` value, `Bearer ` as written, then a compact JWS. Envoy joins a repeated header
# with commas before matching, so two tokens never match.
BEARER = r"Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+"
# The policy name a refused credential's denial carries (answered 401, `_local_replies`).
CREDENTIALS = "credentials"


def _credentials() -> dict[str, Any]:
    """Refuses (401) a request whose credential is unusable, rather than taking it for one
    without: an `authorization` header that is not one bearer token (`bearer x`, two tokens,
    another scheme), or a token in the URL (`access_token=`, which would also be logged).
    Without it, jwt_authn would see no token in `authorization: bearer <t>`, and a route that
    allows a missing token (/graphql) would pass a revoked session's token on."""
    malformed = {
        "and_ids": {
            "ids": [
                {"header": {"name": "authorization", "present_match": True}},
                {
                    "header": {
                        "name": "authorization",
                        "string_match": {"safe_regex": {"regex": BEARER}},
                        "invert_match": True,
                    }
                },
            ]
        }
    }
    in_url = {
        "header": {
            "name": ":path",
            "string_match": {"safe_regex": {"regex": r"[^?]*\?(.*&)?access_token=.*"}},
        }
    }
    return {
        "name": CREDENTIALS_FILTER,
        "typed_config": {
            "@type": _type("filters.http.rbac.v3.RBAC"),
            "rules": {
                "action": "DENY",
                "policies": {
                    CREDENTIALS: {
                        "permissions": [{"any": True}],
                        "principals": [{"or_ids": {"ids": [malformed, in_url]}}],
                    }
                },
            },
        },
    }


def _limited_headers(limit: str) -> list[dict[str, Any]]:
    return [
        {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": key, "value": value}}
        for key, value in (("retry-after", "1"), (LIMIT_HEADER, limit))
    ]


def _local_limit(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's floor: a token bucket shared by every client, after the per-client limits
    (which refuse a greedy client's excess first, so that it never spends the floor): it
    protects the gateway and what is behind it from overload, and its 429 says so."""
    every = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": _type("filters.http.local_ratelimit.v3.LocalRateLimit"),
            "stat_prefix": "local_rate_limit",
            "token_bucket": {
                "max_tokens": config.local_limit_per_s,
                "tokens_per_fill": config.local_limit_per_s,
                "fill_interval": "1s",
            },
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": every},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": every},
            "response_headers_to_add": _limited_headers(FLOOR),
        },
    }


def _reads_per_client(
    config: GatewayConfig, *, units: int = 1, charged: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A token bucket per client for reads (a bucket per value of the user or address entry,
    Envoy's dynamic descriptors), of `units` tokens a read (the subgraph listener's: a GraphQL
    operation spends its cost, COST_OF_A_READ a read, by the descriptors of `charged`: a
    route's descriptors spend one token, and only the filter's own may spend more, Envoy's
    `hits_addend`); calls with no read descriptor use a bucket as large as the floor's, i.e.
    are not limited here."""
    every = {"numerator": 100, "denominator": "HUNDRED"}
    per_client = {
        "max_tokens": config.read_burst_per_client * units,
        "tokens_per_fill": config.reads_per_client_per_s * units,
        "fill_interval": "1s",
    }
    return {
        "name": "ordermesh.reads_per_client",
        "typed_config": {
            "@type": _type("filters.http.local_ratelimit.v3.LocalRateLimit"),
            "stat_prefix": "reads_per_client",
            "stage": READS_STAGE,
            **({"rate_limits": charged} if charged else {}),
            "token_bucket": {
                "max_tokens": config.local_limit_per_s,
                "tokens_per_fill": config.local_limit_per_s,
                "fill_interval": "1s",
            },
            "descriptors": [
                {
                    "entries": [{"key": LIMIT_CLASS, "value": klass.value}, {"key": by}],
                    "token_bucket": per_client,
                }
                for klass, by in (
                    (Limit.READ_BY_USER, BY_USER),
                    (Limit.READ_BY_ADDRESS, BY_ADDRESS),
                )
            ],
            # Buckets kept (least recently used go first): clients seen lately.
            "max_dynamic_descriptors": 20_000,
            # A client's read spends its own bucket only (Envoy's default also spends the
            # default bucket, which made it a second floor, refusing in the client's name).
            "always_consume_default_token_bucket": False,
            "filter_enabled": {"runtime_key": "reads_per_client_enabled", "default_value": every},
            "filter_enforced": {"runtime_key": "reads_per_client_enforced", "default_value": every},
            "response_headers_to_add": _limited_headers(PER_CLIENT),
        },
    }


def _global_limit(config: GatewayConfig) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": _type("filters.http.ratelimit.v3.RateLimit"),
            "domain": config.rate_limit_domain,
            "timeout": _seconds(config.rate_limit_timeout_s),
            # Fails open: without the rate-limit service (or its Redis) requests pass, and the
            # local floor still applies (docs/decisions.md).
            "failure_mode_deny": False,
            "rate_limit_service": {
                "grpc_service": {
                    "envoy_grpc": {"cluster_name": RATE_LIMIT_CLUSTER},
                    "retry_policy": GRPC_RETRIES,
                },
                "transport_api_version": "V3",
            },
        },
    }


GRAPHQL_CLUSTER = "graphql"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# Set by the federation gateway on its calls for a mutation (gateway/graphql): the subgraph
# listener counts those against the global write limits.
OPERATION_HEADER = "x-ordermesh-graphql-operation"
# Set by the federation gateway on every call it makes for an operation: the operation's
# estimated cost (gateway/graphql), and which of its calls this is (1, 2, ...).
COST_HEADER = "x-ordermesh-graphql-cost"
CALL_HEADER = "x-ordermesh-graphql-call"
# What one read costs in the GraphQL cost model: a REST read returns at most a page of
# `pages.MAX_SIZE` objects, each costing 1. An operation is charged its cost in these units
# against its client's read bucket: per second, GraphQL resolves for one client what its REST
# reads may return (50 reads of 100 objects), never more.
COST_OF_A_READ = pages.MAX_SIZE


def graph_cluster(service: str) -> str:
    """The cluster of a service's subgraphs: its instances' HTTP servers (gateway.discovery)."""
    return f"{service}-graph"


def graph_clusters() -> list[str]:
    return [graph_cluster(service.name) for service in graph_services()]


def _off(filter_name: str) -> dict[str, Any]:
    return {filter_name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                          "disabled": True}}  # fmt: skip


def _token_if_any() -> dict[str, Any]:
    jwt = {"@type": _type("filters.http.jwt_authn.v3.PerRouteConfig")}
    return {JWT_FILTER: {**jwt, "requirement_name": TOKEN_IF_ANY}}


def _graphql_route(config: GatewayConfig) -> dict[str, Any]:
    """`/graphql`, to the federation gateway: a token verified if one is sent (public fields
    need none; the subgraphs verify it again, as the services do), its session not revoked,
    and every request counted as a read of its client, as REST reads are. Mutations count as
    writes too, at the subgraph listener."""
    per_route = _off(TRANSCODER)
    if config.auth:
        per_route |= _token_if_any() | {EXT_AUTHZ_FILTER: EXT_AUTHZ_OFF}
    return {
        "match": {"path": GRAPHQL_PATH},
        "route": {
            "rate_limits": _read_limits(),
            "cluster": GRAPHQL_CLUSTER,
            "timeout": _seconds(config.route_timeout_s),
            "retry_policy": {
                "retry_on": ",".join(NEVER_ARRIVED),
                "num_retries": 2,
            },
        },
        "typed_per_filter_config": per_route,
        "request_headers_to_add": _hop_headers(
            (INTERNAL_HEADER, INTERNAL_TOKEN),
            (CLIENT_HEADER, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        ),
    }


def _hop_headers(*headers: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in headers
    ]


def _graphql_cluster(config: GatewayConfig) -> dict[str, Any]:
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
        "health_checks": [_health_check(config, {"http_health_check": {"path": "/readiness"}})],
    }


def _subgraph_listener(config: GatewayConfig) -> dict[str, Any]:
    """The federation gateway's way to the subgraphs: `subgraph_path(service)` to the
    service's healthy instances, balanced, retried when a call never reached one; a mutation
    (OPERATION_HEADER) counted against the global write limits, per user and per address (the
    client's, in CLIENT_HEADER from the public listener); every operation's cost (COST_HEADER)
    charged once against its client's read bucket (`_cost_limits`). Only the federation
    gateway may call it (INTERNAL_HEADER, checked first, `internal_hop_config`). The token the
    federation gateway passes on meets the public listener's rules again (the credential rule,
    verified if sent, its session not revoked): what is counted by, and what a subgraph acts
    as, is never taken on trust, even from a caller of this port other than the federation
    gateway."""
    routes: list[dict[str, Any]] = []
    to_subgraph = _hop_headers((INTERNAL_HEADER, INTERNAL_TOKEN))
    for service in graph_services():
        path = subgraph_path(service.name)
        target = {
            "cluster": graph_cluster(service.name),
            "prefix_rewrite": GRAPHQL_PATH,
            "timeout": _seconds(config.route_timeout_s),
            "retry_policy": {
                "retry_on": ",".join(NEVER_ARRIVED),
                "num_retries": 2,
                "retry_host_predicate": [PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": HOST_REPICKS,
            },
        }
        mutation = [{"name": OPERATION_HEADER, "string_match": {"exact": "mutation"}}]
        if config.rate_limit:
            writes = _write_limits(CLIENT_ACTION)
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
        "@type": _type("filters.network.http_connection_manager.v3.HttpConnectionManager"),
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
                    **({"typed_per_filter_config": _token_if_any()} if config.auth else {}),
                }
            ],
        },
        **({"tracing": _tracing(config)} if config.otlp_endpoint else {}),
        # What Envoy answers itself (a refused token, a write limit reached, no healthy
        # instance) as a GraphQL response, which the federation gateway passes on to its client.
        "local_reply_config": {
            "mappers": [
                {"filter": match, **extra, "body_format_override": _graphql_error_body(code, text)}
                for match, code, text, extra in _replies()
            ]
        },
        "access_log": [_access_log()],
        "http_filters": [
            # Only the federation gateway's calls (INTERNAL_HEADER), then as on the public
            # listener: the credential rule, the token if sent, its session not revoked.
            _from_policy_file(policy_paths(config)["internal"], "filters.http.rbac.v3.RBAC"),
            *(
                [_strip_identity_headers(hops=False), *_token_filters(config)]
                if config.auth
                else []
            ),
            _reads_per_client(config, units=COST_OF_A_READ, charged=_cost_limits()),
            *([_global_limit(config)] if config.rate_limit else []),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _type("filters.http.router.v3.Router")},
            },
        ],
    }
    return _listener("subgraphs", config.subgraphs_host, config.subgraphs_port, manager)


def _listener(
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


def _downstream_tls(config: GatewayConfig) -> dict[str, Any]:
    """HTTPS and gRPC over TLS (ALPN: HTTP/2, then HTTP/1.1), TLS 1.2 at least, with the
    certificate and key of the files the configuration names (a deployment's secret)."""
    certificate = {
        "certificate_chain": {"filename": str(config.tls_cert)},
        "private_key": {"filename": str(config.tls_key)},
    }
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _type("transport_sockets.tls.v3.DownstreamTlsContext"),
            "common_tls_context": {
                "tls_certificates": [certificate],
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            },
        },
    }


def bootstrap(config: GatewayConfig, rpcs: Iterable[Rpc] | None = None) -> dict[str, Any]:
    """Envoy's bootstrap for the gateway (without the admin listener: see PrivateEnvoy)."""
    rpcs = list(rpcs if rpcs is not None else routable_rpcs(config.descriptor_set.read_bytes()))
    clusters = sorted({rpc.cluster for rpc in rpcs}) + _companions(config)
    graphql = bool(config.graphql_address)
    routes = [_route(rpc, config) for rpc in rpcs]
    if graphql:
        routes.append(_graphql_route(config))
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
        "@type": _type("filters.network.http_connection_manager.v3.HttpConnectionManager"),
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        # The client's address is the connection's peer: X-Forwarded-For is not believed.
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
                            "response_headers_to_add": _hop_headers(
                                ("strict-transport-security", f"max-age={config.hsts_max_age_s}")
                            )
                        }
                        if config.tls
                        else {}
                    ),
                }
            ],
        },
        **({"tracing": _tracing(config)} if config.otlp_endpoint else {}),
        "local_reply_config": _local_replies(graphql),
        "access_log": [_access_log()],
        # A slow or greedy client holds a stream or a connection only this long, and sends
        # only this much (see GatewayConfig).
        "request_headers_timeout": _seconds(config.request_headers_timeout_s),
        "request_timeout": _seconds(config.request_timeout_s),
        "stream_idle_timeout": _seconds(config.stream_idle_timeout_s),
        "max_request_headers_kb": config.max_request_headers_kb,
        "common_http_protocol_options": {
            "idle_timeout": _seconds(config.connection_idle_timeout_s),
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
            _strip_identity_headers(),
            _header_names(),
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": _type("filters.http.buffer.v3.Buffer"),
                    "max_request_bytes": config.max_request_bytes,
                },
            },
            _transcoder(rpcs, config),
            *(_access_filters(config) if config.auth else []),
            _reads_per_client(config),
            *([_global_limit(config)] if config.rate_limit else []),
            _local_limit(config),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _type("filters.http.router.v3.Router")},
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
                        "@type": _type(
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
                _listener(
                    "gateway",
                    config.host,
                    config.port,
                    manager,
                    tls=_downstream_tls(config) if config.tls else None,
                ),
                *([_subgraph_listener(config)] if graphql else []),
            ],
            "clusters": [
                *(_cluster(name, config) for name in clusters),
                *(
                    [_graphql_cluster(config)]
                    + [_cluster(name, config, http2=False) for name in graph_clusters()]
                    if graphql
                    else []
                ),
                *([_otlp_cluster(config)] if config.otlp_endpoint else []),
            ],
        },
    }


OTLP_CLUSTER = "otlp"


def _tracing(config: GatewayConfig) -> dict[str, Any]:
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


def _otlp_cluster(config: GatewayConfig) -> dict[str, Any]:
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
                "@type": _type("upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def clusters_of(config: GatewayConfig) -> list[str]:
    """The services the gateway calls (one EDS file each)."""
    routed = {rpc.cluster for rpc in routable_rpcs(config.descriptor_set.read_bytes())}
    return sorted(routed) + _companions(config)


def _companions(config: GatewayConfig) -> list[str]:
    """The gateway's own services: the auth check and the global rate limits."""
    return ([AUTH_CLUSTER] if config.auth else []) + (
        [RATE_LIMIT_CLUSTER] if config.rate_limit else []
    )
