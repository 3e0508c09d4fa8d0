"""The filters whose configuration is a policy file (ECDS), reloaded by Envoy when the file is
replaced: what the gateway's agent renders at run time from the auth service's policy
(ordermesh.policy, written as files by ordermesh.gateway.policy) and the internal hops' secret.
jwt_authn verifying the issuer's tokens, the RBAC of revoked sessions, and the subgraph listener's
check of its callers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_authn_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2 as xds_extension_pb2

from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.names import (
    CLAIMS_METADATA,
    PROVIDER,
    SESSION_HEADER,
    TOKEN_IF_ANY,
    TOKEN_REQUIREMENT,
    USER_HEADER,
    seconds,
    type_url,
)
from ordermesh.identity import INTERNAL_HEADER

__all__ = [
    "INTERNAL_HOP",
    "REVOKED",
    "from_policy_file",
    "internal_hop_config",
    "jwt_authn_config",
    "revocations_config",
]


def jwt_authn_config(config: GatewayConfig, jwks: Mapping[str, Any]) -> Message:
    """jwt_authn verifying the issuer's tokens against `jwks`, which holds only the EdDSA keys
    the auth service accepted (ordermesh.gateway.auth.service): a token naming another algorithm
    (none, HS256 with a public key, RS256) finds no key."""
    provider = {
        "issuer": config.jwt_issuer,
        "audiences": [config.jwt_audience],
        "local_jwks": {"inline_string": json.dumps(jwks, sort_keys=True)},
        "require_expiration": True,
        "max_lifetime": seconds(config.max_token_lifetime_s),
        "clock_skew_seconds": config.clock_skew_s,
        # Only from `authorization: Bearer <token>` (jwt_authn also reads `?access_token=` by
        # default: a token in a URL is refused before, see ordermesh.gateway.envoy.access).
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        # The services verify the token again (ordermesh.identity): it goes on to them.
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
    many there are (a list of principals is a linear scan, measured on these machines).
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


# The RBAC policy name of a refused internal hop (answered 401, ordermesh.gateway.envoy.replies).
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


def from_policy_file(path: Path, extension: str) -> dict[str, Any]:
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
            "type_urls": [type_url(extension)],
        },
    }
