"""The gateway's fault switches as Envoy's fault filter (ordermesh.gateway.envoy.faults): what a
switch's rule and settings become, off by default, and where the filters sit in the chain. Envoy
taking them while it runs is in tests/e2e/test_fault_switches.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.type.v3 import percent_pb2
from ordermesh.gateway.envoy import GatewayConfig, bootstrap
from ordermesh.gateway.envoy.faults import fault_config
from ordermesh.switches import GATEWAY_ABORTS, GATEWAY_LATENCY

from gateway import DESCRIPTOR_SET
from services.catalogue import CATALOGUE


def test_off_a_filter_neither_delays_nor_aborts():
    for switch in (GATEWAY_LATENCY, GATEWAY_ABORTS):
        fault = fault_config(switch)
        assert not fault.HasField("delay")
        assert not fault.HasField("abort")


def test_a_latency_for_one_method_of_a_service_on_a_share_of_its_calls():
    fault = fault_config(
        GATEWAY_LATENCY,
        {"service": "order", "method": "PlaceOrder"},
        {"latency_ms": 250, "percent": 12.5},
    )

    assert fault.delay.fixed_delay.ToMilliseconds() == 250
    assert (fault.delay.percentage.numerator, fault.delay.percentage.denominator) == (
        125_000,
        percent_pb2.FractionalPercent.MILLION,
    )
    assert fault.upstream_cluster == "order"
    [not_operator, path] = fault.headers
    assert (path.name, path.string_match.suffix) == (":path", "/PlaceOrder")
    assert operators_spared(not_operator)
    assert not fault.HasField("abort")


def test_aborts_of_every_call_of_every_service():
    fault = fault_config(GATEWAY_ABORTS, {}, {"percent": 100.0, "http_status": 503})

    assert fault.abort.http_status == 503
    assert fault.abort.percentage.numerator == 1_000_000
    assert fault.upstream_cluster == ""
    [not_operator] = fault.headers
    assert operators_spared(not_operator)


def operators_spared(matcher) -> bool:
    """The operator APIs are never faulted: an operator turns the fault off through them."""
    return (matcher.name, matcher.string_match.prefix, matcher.invert_match) == (
        ":path",
        "/ops.",
        True,
    )


def test_a_rule_the_gateway_cannot_apply_is_refused():
    with pytest.raises(ValueError, match="service and method only"):
        fault_config(
            GATEWAY_ABORTS, {"targeting": {"in": ["x", "y"]}}, {"percent": 5.0, "http_status": 500}
        )


def test_the_fault_filters_come_last_before_the_router(tmp_path: Path):
    config = GatewayConfig(
        port=8080,
        eds_dir=tmp_path / "eds",
        catalogue=CATALOGUE,
        descriptor_set=DESCRIPTOR_SET,
        policy_dir=tmp_path / "policy",
    )
    [listener] = [
        listener for listener in bootstrap(config)["static_resources"]["listeners"]
        if listener["name"] == "gateway"
    ]  # fmt: skip
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]

    assert names[-3:] == [GATEWAY_LATENCY, GATEWAY_ABORTS, "envoy.filters.http.router"]
