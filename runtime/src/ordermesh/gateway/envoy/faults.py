"""The gateway's fault switches (ordermesh.switches: `gateway-latency`, `gateway-aborts`) as
Envoy's fault filter: one filter for each, just before the router (so a call the access filters
or the limits refuse is refused, never delayed or aborted), each configured by a file that the
gateway's agent rewrites whenever the flag file changes (ECDS, as the policy files): turned on
and off while Envoy runs, without a restart.

A switch's conditions become the filter's: `service` the cluster the call is routed to,
`method` the RPC's name at the end of its gRPC path (a REST call is matched by the RPC it is
transcoded to), `percent` the share of the calls matched; never the operator APIs (`ops.`),
through which an operator turns the fault off again. Off, a filter has neither a delay nor
an abort and passes every call. Envoy counts what it injected:
`envoy_http_fault_delays_injected` and `envoy_http_fault_aborts_injected` (stat prefix
`gateway`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf.message import Message

from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.ecds import from_policy_file
from ordermesh.switches import GATEWAY_ABORTS, GATEWAY_LATENCY

__all__ = ["FAULT", "GATEWAY_SWITCHES", "fault_config", "fault_filters", "fault_paths"]

FAULT = "filters.http.fault.v3.HTTPFault"
GATEWAY_SWITCHES = (GATEWAY_LATENCY, GATEWAY_ABORTS)
# The gRPC paths of the operator APIs, never faulted (ordermesh.grpc.UNSWITCHED).
OPERATOR = "/ops."


def fault_paths(config: GatewayConfig) -> dict[str, Path]:
    """The file configuring each switch's filter, named after it (the filter's name)."""
    return {switch: config.policy_dir / f"{switch}.pb" for switch in GATEWAY_SWITCHES}


def fault_filters(config: GatewayConfig) -> list[dict[str, Any]]:
    return [from_policy_file(path, FAULT) for path in fault_paths(config).values()]


def fault_config(
    switch: str, where: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
) -> Message:
    """The fault filter of `switch`: on for what `where` names (None: off) with its settings.
    ValueError for conditions it cannot express (a hand-written targeting rule)."""
    fault = fault_pb2.HTTPFault()
    if where is None or settings is None:
        return cast(Message, fault)
    unknown = set(where) - {"service", "method"}
    if unknown:
        raise ValueError(f"{switch}: the gateway applies service and method only, not {unknown}")
    share = percent_pb2.FractionalPercent(
        numerator=round(settings["percent"] * 10_000),
        denominator=percent_pb2.FractionalPercent.MILLION,
    )
    if switch == GATEWAY_LATENCY:
        fault.delay.fixed_delay.FromMilliseconds(settings["latency_ms"])
        fault.delay.percentage.CopyFrom(share)
    else:
        fault.abort.http_status = settings["http_status"]
        fault.abort.percentage.CopyFrom(share)
    fault.headers.append(
        route_components_pb2.HeaderMatcher(
            name=":path", string_match=string_pb2.StringMatcher(prefix=OPERATOR), invert_match=True
        )
    )
    if where.get("service"):
        fault.upstream_cluster = where["service"]
    if where.get("method"):
        fault.headers.append(
            route_components_pb2.HeaderMatcher(
                name=":path", string_match=string_pb2.StringMatcher(suffix=f"/{where['method']}")
            )
        )
    return cast(Message, fault)
