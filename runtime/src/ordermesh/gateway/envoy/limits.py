"""How often (docs/decisions.md, "Rate limits"): the descriptors each call counts against and
the filters that count them.

A local token bucket per gateway as a floor shared by every client; reads per client (the
verified user, else the client's address), counted in Envoy; global limits shared by every
gateway (sign-in attempts per client address, writes per user and per address), counted by the
rate-limit service, failing open; and a GraphQL operation's cost charged against its client's
reads. The descriptors' vocabulary is the rate-limit service's (ordermesh.gateway.ratelimits).
"""

from __future__ import annotations

from typing import Any

from ordermesh import pages
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import Rpc
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.names import (
    CALL_HEADER,
    CLIENT_HEADER,
    COST_HEADER,
    RATE_LIMIT_CLUSTER,
    USER_HEADER,
    seconds,
    type_url,
)
from ordermesh.gateway.envoy.retries import GRPC_RETRIES
from ordermesh.gateway.ratelimits import BY_ADDRESS, BY_USER, LIMIT_CLASS, Limit

__all__ = [
    "CLIENT_ACTION",
    "COST_OF_A_READ",
    "FLOOR",
    "LIMIT_HEADER",
    "PER_CLIENT",
    "cost_limits",
    "global_limit",
    "local_limit",
    "rate_limits",
    "read_limits",
    "reads_per_client",
    "write_limits",
]

# The stage of the per-client read limits (Envoy's local limit filter after the auth check);
# the global limits are stage 0.
READS_STAGE = 1


def _descriptor(klass: Limit, by: dict[str, Any]) -> dict[str, Any]:
    return {
        "actions": [
            {"generic_key": {"descriptor_key": LIMIT_CLASS, "descriptor_value": klass.value}},
            by,
        ]
    }


# The client's address as the public listener takes it (access.client_address), also behind
# the federation gateway, which passes it on.
CLIENT_ACTION = {"request_headers": {"header_name": CLIENT_HEADER, "descriptor_key": BY_ADDRESS}}
BY_USER_ACTION = {"request_headers": {"header_name": USER_HEADER, "descriptor_key": BY_USER}}


def rate_limits(rpc: Rpc, config: GatewayConfig) -> list[dict[str, Any]]:
    """The limits a call counts against. Global (the rate-limit service): sign-in attempts
    (public writes: Register, Login, RefreshToken, Logout) per client address; other writes per
    user and per address. Local (Envoy, READS_STAGE): reads per verified user, or per address
    for a caller without a token (clients' copies of the header are removed first)."""
    if rpc.is_read:
        return read_limits()
    if not config.rate_limit:
        return []
    if rpc.access == options_pb2.ACCESS_PUBLIC:
        return [_descriptor(Limit.SIGN_IN, CLIENT_ACTION)]
    return write_limits()


def read_limits() -> list[dict[str, Any]]:
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
        {"stage": READS_STAGE, "actions": [anonymous, CLIENT_ACTION]},
    ]


# What one read costs in the GraphQL cost model: a REST read returns at most a page of
# `pages.MAX_SIZE` objects, each costing 1. An operation is charged its cost in these units
# against its client's read bucket: per second, GraphQL resolves for one client what its REST
# reads may return (50 reads of 100 objects), never more.
COST_OF_A_READ = pages.MAX_SIZE


def cost_limits() -> list[dict[str, Any]]:
    """A GraphQL operation's cost, charged once (at its first call) against its client's read
    bucket: the verified user's, or the address's the public listener saw for a caller without
    a token (the reads of `read_limits`, behind the federation gateway)."""
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


def write_limits() -> list[dict[str, Any]]:
    return [_descriptor(Limit.WRITE, BY_USER_ACTION), _descriptor(Limit.WRITE, CLIENT_ACTION)]


# Set on the 429 of each of Envoy's own limits, so that a client (and the local reply's
# message) can tell its own limit from the gateway's floor.
LIMIT_HEADER = "x-ordermesh-limit"
PER_CLIENT, FLOOR = "per-client", "gateway"


def _limited_headers(limit: str) -> list[dict[str, Any]]:
    return [
        {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": key, "value": value}}
        for key, value in (("retry-after", "1"), (LIMIT_HEADER, limit))
    ]


def local_limit(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's floor: a token bucket shared by every client, after the per-client limits
    (which refuse a greedy client's excess first, so that it never spends the floor): it
    protects the gateway and what is behind it from overload, and its 429 says so."""
    every = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": type_url("filters.http.local_ratelimit.v3.LocalRateLimit"),
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


def reads_per_client(
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
            "@type": type_url("filters.http.local_ratelimit.v3.LocalRateLimit"),
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


def global_limit(config: GatewayConfig) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": type_url("filters.http.ratelimit.v3.RateLimit"),
            "domain": config.rate_limit_domain,
            "timeout": seconds(config.rate_limit_timeout_s),
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
