"""Who may call, decided in Envoy (docs/decisions.md, "Edge auth"): the access filters in their
order and their per-route configuration.

The credential rule (one bearer token, never in a URL), jwt_authn and the RBAC of revoked
sessions (from the policy files, ordermesh.gateway.envoy.ecds), the admin role on ADMIN routes, and
the auth service's check (ext_authz) where a contract asks for it, failing closed. Clients' copies
of the headers Envoy writes from a verified token are removed first.
"""

from __future__ import annotations

from typing import Any

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import Rpc
from ordermesh.gateway.envoy.config import GatewayConfig, policy_paths
from ordermesh.gateway.envoy.ecds import from_policy_file
from ordermesh.gateway.envoy.names import (
    ADMIN_FILTER,
    AUTH_CLUSTER,
    CLAIMS_METADATA,
    CLIENT_HEADER,
    CREDENTIALS_FILTER,
    EXT_AUTHZ_FILTER,
    IDENTITY_HEADERS,
    JWT_FILTER,
    TOKEN_IF_ANY,
    TOKEN_REQUIREMENT,
    seconds,
    type_url,
)
from ordermesh.gateway.envoy.retries import GRPC_RETRIES
from ordermesh.identity import INTERNAL_HEADER

__all__ = [
    "CREDENTIALS",
    "EXT_AUTHZ_OFF",
    "access_filters",
    "access_of",
    "client_address",
    "strip_identity_headers",
    "token_filters",
    "token_if_any",
]

# On ADMIN routes: the verified token's roles must hold "admin" (jwt_authn put its claims in
# the request's dynamic metadata).
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


EXT_AUTHZ_OFF = {"@type": type_url("filters.http.ext_authz.v3.ExtAuthzPerRoute"), "disabled": True}


def access_of(rpc: Rpc) -> dict[str, Any]:
    """The per-route configuration of the access filters: a token required on AUTHENTICATED
    and ADMIN routes, the admin role on ADMIN ones, the auth service's check where the
    contract asks for it."""
    jwt: dict[str, Any] = {"@type": type_url("filters.http.jwt_authn.v3.PerRouteConfig")}
    if rpc.access == options_pb2.ACCESS_PUBLIC:
        jwt["disabled"] = True
    else:
        jwt["requirement_name"] = TOKEN_REQUIREMENT
    filters: dict[str, Any] = {JWT_FILTER: jwt}
    if rpc.access == options_pb2.ACCESS_ADMIN:
        filters[ADMIN_FILTER] = {
            "@type": type_url("filters.http.rbac.v3.RBACPerRoute"),
            "rbac": ADMIN_ROLE,
        }
    if not rpc.policy_check:
        filters[EXT_AUTHZ_FILTER] = EXT_AUTHZ_OFF
    return filters


def token_if_any() -> dict[str, Any]:
    """The per-route configuration of jwt_authn where a token is verified if one is sent
    (GraphQL, where public fields need none)."""
    jwt = {"@type": type_url("filters.http.jwt_authn.v3.PerRouteConfig")}
    return {JWT_FILTER: {**jwt, "requirement_name": TOKEN_IF_ANY}}


def _ext_authz(config: GatewayConfig) -> dict[str, Any]:
    """The auth service's check, disabled on the routes whose contract does not ask for it."""
    return {
        "name": EXT_AUTHZ_FILTER,
        "typed_config": {
            "@type": type_url("filters.http.ext_authz.v3.ExtAuthz"),
            "transport_api_version": "V3",
            "grpc_service": {
                "envoy_grpc": {"cluster_name": AUTH_CLUSTER},
                "timeout": seconds(config.auth_timeout_s),
                "retry_policy": GRPC_RETRIES,
            },
            # Fail closed: no answer from the auth service is a 503, never a pass.
            "failure_mode_allow": False,
            "status_on_error": {"code": 503},
            "allowed_headers": {"patterns": [{"exact": "authorization"}]},
        },
    }


JWT = "filters.http.jwt_authn.v3.JwtAuthentication"


def token_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    """The credential rule, the token (verified where a route asks), its session not revoked."""
    paths = policy_paths(config)
    return [
        _credentials(),
        from_policy_file(paths["jwt"], JWT),
        from_policy_file(paths["revocations"], "filters.http.rbac.v3.RBAC"),
    ]


def access_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    """The token's filters, the admin role, then the auth service's check (see the module's
    doc)."""
    return [
        *token_filters(config),
        # No rules but on ADMIN routes. (Not a filter disabled but on some routes: Envoy
        # decides that from the route before transcoding, and a REST path has none.)
        {"name": ADMIN_FILTER, "typed_config": {"@type": type_url("filters.http.rbac.v3.RBAC")}},
        _ext_authz(config),
    ]


def strip_identity_headers() -> dict[str, Any]:
    """Removes clients' copies of the headers Envoy writes from a verified token."""
    return {
        "name": "ordermesh.strip_identity_headers",
        "typed_config": {
            "@type": type_url("filters.http.header_mutation.v3.HeaderMutation"),
            "mutations": {"request_mutations": [{"remove": n} for n in IDENTITY_HEADERS]},
        },
    }


# The public listener's first filter. The secret (`expected`) is read once, when a worker loads
# the script.
# An address a caller may name is an IPv4 or IPv6 literal (hex digits, dots, colons), no longer
# than an IPv6 one: a repeated header (joined with commas) is none.
CLIENT_ADDRESS = f"""
local expected = os.getenv("INTERNAL_TOKEN") or ""
local function without_port(peer)
  return peer:match("^%[(.+)%]:%d+$") or peer:match("^(.+):%d+$") or peer
end
function envoy_on_request(handle)
  local headers = handle:headers()
  local named = headers:get("{CLIENT_HEADER}")
  local sent = headers:get("{INTERNAL_HEADER}")
  headers:remove("{INTERNAL_HEADER}")
  local client = without_port(handle:streamInfo():downstreamRemoteAddress())
  if expected ~= "" and sent == expected and named ~= nil and #named <= 45
      and named:match("^[%x%.:]+$") then
    client = named
  end
  headers:replace("{CLIENT_HEADER}", client)
end
"""


def client_address() -> dict[str, Any]:
    """The client's address every limit per address counts by, in CLIENT_HEADER (whatever a
    caller wrote there is replaced): the connection's peer; or, for a call carrying the
    internal hops' secret in INTERNAL_HEADER (a web site of the system calling the API for a
    browser: the storefront, the console), the address it names in CLIENT_HEADER, the
    browser's, which this gateway gave it on its pages' hop. Without this, every customer of
    the storefront would share the storefront's own budget of sign-ins and writes. The secret
    is removed from the call either way: it never reaches a service from the public listener."""
    return {
        "name": "ordermesh.client_address",
        "typed_config": {
            "@type": type_url("filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": CLIENT_ADDRESS.strip()},
        },
    }


# The credential rule (the same in every service, ordermesh.tokens.bearer_token): one
# `authorization` value, `Bearer ` as written, then a compact JWS. Envoy joins a repeated header
# with commas before matching, so two tokens never match.
BEARER = r"Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+"
# The policy name a refused credential's denial carries (answered 401,
# ordermesh.gateway.envoy.replies).
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
            "@type": type_url("filters.http.rbac.v3.RBAC"),
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
