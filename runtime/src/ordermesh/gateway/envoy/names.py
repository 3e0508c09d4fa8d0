"""The ground floor of the gateway's Envoy configuration: the names every part shares.

The headers Envoy writes or passes on, the filters' and clusters' names, the GraphQL paths and
port, and the spellings every part uses (an extension's type URL, a duration, headers to add).
It imports nothing of the package.
"""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Catalogue
from ordermesh.identity import CLIENT_HEADER

__all__ = [
    "ADMIN_FILTER",
    "AUTH_CLUSTER",
    "CALL_HEADER",
    "CLAIMS_METADATA",
    "CLIENT_HEADER",
    "COST_HEADER",
    "CREDENTIALS_FILTER",
    "EXT_AUTHZ_FILTER",
    "GATEWAY_PORT",
    "GRAPHQL_CLUSTER",
    "GRAPHQL_PATH",
    "GRAPHQL_PORT",
    "IDENTITY_HEADERS",
    "INTERNAL_FILTER",
    "INTERNAL_TOKEN",
    "JWT_FILTER",
    "OPERATION_HEADER",
    "OTLP_CLUSTER",
    "PROVIDER",
    "RATE_LIMIT_CLUSTER",
    "REVOCATIONS_FILTER",
    "SESSION_HEADER",
    "SUBGRAPHS_PORT",
    "TOKEN_IF_ANY",
    "TOKEN_REQUIREMENT",
    "TRANSCODER",
    "USER_HEADER",
    "graph_cluster",
    "graph_clusters",
    "hop_headers",
    "seconds",
    "subgraph_path",
    "type_url",
    "web_cluster",
    "web_clusters",
]

# Written by Envoy from a verified token, after removing any copy a client sent: the caller's
# user id (what per-user rate limits count by) and session id (what revocations match).
# Services never read them: they verify the token themselves (ordermesh.identity).
USER_HEADER = "x-ordermesh-user"
SESSION_HEADER = "x-ordermesh-session"
IDENTITY_HEADERS = (USER_HEADER, SESSION_HEADER)
# The internal hops of GraphQL (Envoy -> the federation gateway -> the subgraph listener -> a
# service's subgraph) carry a secret every part of the system is given (INTERNAL_TOKEN, which
# Envoy reads from its environment and the agent writes into the subgraph listener's check):
# each hop refuses a caller without it, so a port reachable on the host or in the network is
# not a door around the gateway. And the client's address as the public listener takes it
# (CLIENT_HEADER, access.client_address), which the limits per address count by: never a
# header a client wrote (X-Forwarded-For).
INTERNAL_TOKEN = "%ENVIRONMENT(INTERNAL_TOKEN)%"
INTERNAL_FILTER = "ordermesh.internal"
# The filters whose configuration comes from the policy files (ordermesh.gateway.policy), by file.
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
# The federation gateway behind `/graphql`, and the OTLP receiver of Envoy's spans.
GRAPHQL_CLUSTER = "graphql"
OTLP_CLUSTER = "otlp"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# Set by the federation gateway on its calls for a mutation (gateway/graphql): the subgraph
# listener counts those against the global write limits.
OPERATION_HEADER = "x-ordermesh-graphql-operation"
# Set by the federation gateway on every call it makes for an operation: the operation's
# estimated cost (gateway/graphql), and which of its calls this is (1, 2, ...).
COST_HEADER = "x-ordermesh-graphql-cost"
CALL_HEADER = "x-ordermesh-graphql-call"

# GraphQL: the federation gateway (Hive Gateway, gateway/graphql) serves the public route; it
# reaches each service's subgraph through the subgraph listener, at `subgraph_path(service)`,
# on this port where compose.yaml runs it (make up and the tests pick free ones).
GRAPHQL_PATH = "/graphql"
SUBGRAPHS_PORT = 8081
# Envoy's public listener, and the GraphQL federation gateway behind /graphql (their defaults;
# ordermesh.deploy.facts names them for every target).
GATEWAY_PORT = 8080
GRAPHQL_PORT = 4000


def subgraph_path(service: str) -> str:
    return f"{GRAPHQL_PATH}/{service}"


def graph_cluster(service: str) -> str:
    """The cluster of a service's subgraphs: its instances' HTTP servers
    (ordermesh.gateway.discovery)."""
    return f"{service}-graph"


def graph_clusters(catalogue: Catalogue) -> list[str]:
    return [graph_cluster(service.name) for service in catalogue.graph_services()]


def web_cluster(service: str) -> str:
    """The cluster of a service's web pages: its instances' HTTP servers
    (ordermesh.gateway.discovery)."""
    return f"{service}-web"


def web_clusters(catalogue: Catalogue) -> list[str]:
    return [web_cluster(service.name) for service in catalogue.web_services()]


def type_url(extension: str) -> str:
    """The type URL of an Envoy extension's config, e.g. "filters.http.router.v3.Router"."""
    return f"type.googleapis.com/envoy.extensions.{extension}"


def seconds(value: float) -> str:
    return f"{value:g}s"


def hop_headers(*headers: tuple[str, str]) -> list[dict[str, Any]]:
    """Headers to set, each replacing any copy the request or answer already has."""
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in headers
    ]
