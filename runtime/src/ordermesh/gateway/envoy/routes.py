"""The public listener's routes: one per routable RPC (its limits, its retries, its access), and
the transcoder that turns the REST API of the contracts' `google.api.http` rules into gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordermesh.gateway.contracts import ADDRESS_HEADER, Rpc
from ordermesh.gateway.envoy.access import access_of
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.limits import rate_limits
from ordermesh.gateway.envoy.names import TRANSCODER, seconds, type_url
from ordermesh.gateway.envoy.retries import HOST_REPICKS, NEVER_ARRIVED, PREVIOUS_HOSTS

__all__ = ["rpc_route", "rpc_routes", "transcoder"]


def rpc_routes(rpc: Rpc, config: GatewayConfig) -> list[dict[str, Any]]:
    """The route of an RPC; for an API several services serve, one for gRPC calls naming
    `rpc.cluster` in their metadata and one for REST calls naming it in their path (the
    transcoder keeps the path it was given in x-envoy-original-path)."""
    route = rpc_route(rpc, config)
    if not rpc.addressed:
        return [route]
    by_name = [{"name": ADDRESS_HEADER, "string_match": {"exact": rpc.cluster}}]
    matches = [{"path": rpc.path, "headers": by_name}]
    if rpc.rest_prefix:
        by_path = [{"name": "x-envoy-original-path", "string_match": {"prefix": rpc.rest_prefix}}]
        matches.append({"path": rpc.path, "headers": by_path})
    return [{**route, "match": match} for match in matches]


def rpc_route(rpc: Rpc, config: GatewayConfig) -> dict[str, Any]:
    retry_on = list(NEVER_ARRIVED)
    if rpc.retry_safe:
        retry_on += ["unavailable", "reset"]
    limits = rate_limits(rpc, config)
    route: dict[str, Any] = {
        "match": {"path": rpc.path},
        "route": {
            **({"rate_limits": limits} if limits else {}),
            "cluster": rpc.cluster,
            "timeout": seconds(config.route_timeout_s),
            # A client's grpc-timeout, if shorter, is the call's deadline.
            "max_stream_duration": {"grpc_timeout_header_max": seconds(config.route_timeout_s)},
            "retry_policy": {
                "retry_on": ",".join(retry_on),
                "num_retries": 2,
                "retry_host_predicate": [PREVIOUS_HOSTS],
                "host_selection_retry_max_attempts": HOST_REPICKS,
            },
        },
    }
    if config.auth:
        route["typed_per_filter_config"] = access_of(rpc)
    if rpc.answer_headers:
        route["response_headers_to_add"] = [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in rpc.answer_headers
        ]
    return route


def transcoder(rpcs: Sequence[Rpc], config: GatewayConfig) -> dict[str, Any]:
    return {
        "name": TRANSCODER,
        "typed_config": {
            "@type": type_url("filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"),
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
