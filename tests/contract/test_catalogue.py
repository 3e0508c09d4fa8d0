"""The service catalogue is the one list of services: the code, the contracts, the gateway and
the rate-limit service are held to it."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
from ordermesh.catalogue import OPERATOR_API, SAGA_API, Catalogue, Need, Service, load
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import routable_rpcs
from ordermesh.gateway.envoy import GatewayConfig, clusters_of
from ordermesh.gateway.envoy.names import web_cluster, web_clusters
from ordermesh.gateway.ratelimit.config import RateLimitSettings
from ordermesh.gateway.ratelimits import GLOBAL_LIMITS
from ordermesh.gateway.services import GATEWAY_SERVICES

from services import catalogue
from services.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTORS = ROOT / "gen" / "descriptors.pb"


def test_every_service_package_has_an_entry_and_every_entry_a_package():
    packages = {p.name for p in (ROOT / "services").iterdir() if (p / "__main__.py").exists()}
    assert packages == {service.name for service in CATALOGUE if not service.package}
    # The gateway's own are the runtime's: each runs from a package of it.
    for service in GATEWAY_SERVICES:
        assert service in CATALOGUE
        assert importlib.util.find_spec(f"{service.module}.__main__") is not None


def test_every_routed_api_is_routed_to_the_entries_that_serve_it():
    routed = {
        (rpc.service, rpc.cluster) for rpc in routable_rpcs(DESCRIPTORS.read_bytes(), CATALOGUE)
    }
    served = {(api, service.name) for service in CATALOGUE for api in service.routed_apis}
    assert routed == served


def test_the_operator_api_is_routed_to_every_service_with_a_runtime_and_named_by_the_call():
    rpcs = [
        r for r in routable_rpcs(DESCRIPTORS.read_bytes(), CATALOGUE) if r.service == OPERATOR_API
    ]
    with_runtime = {s.name for s in CATALOGUE if Need.STORE in s.needs}
    assert {rpc.cluster for rpc in rpcs} == with_runtime
    assert all(rpc.addressed and rpc.access == options_pb2.ACCESS_ADMIN for rpc in rpcs)
    # The sagas' operator API, which one service serves, is named by the call too: a call for
    # a service that runs no sagas has no route. An API of one service's own, by its path.
    rpcs = routable_rpcs(DESCRIPTORS.read_bytes(), CATALOGUE)
    sagas = [r for r in rpcs if r.service == SAGA_API]
    assert {(r.cluster, r.addressed) for r in sagas} == {("order", True)}
    assert not any(r.addressed for r in rpcs if r.service == "order.v1.OrderService")


def test_an_api_no_entry_serves_is_refused_by_name():
    with pytest.raises(KeyError, match=r"nosuch\.v1\.NoSuchService"):
        catalogue.CATALOGUE.serving("nosuch.v1.NoSuchService")


def test_the_gateway_has_a_cluster_for_every_service_of_the_catalogue():
    """A gRPC cluster for each service it calls, a web cluster for each with web pages."""
    config = GatewayConfig(
        port=8080, eds_dir=Path("eds"), catalogue=CATALOGUE, descriptor_set=DESCRIPTORS
    )
    clusters = [*clusters_of(config), *web_clusters(CATALOGUE)]
    assert sorted(clusters) == sorted(
        web_cluster(service.name) if service.web else service.name for service in CATALOGUE
    )


@pytest.mark.parametrize("service", CATALOGUE, ids=lambda s: s.name)
def test_the_address_settings_are_exactly_the_services_an_entry_calls(service: Service):
    # The token issuer's is read by the runtime (ordermesh.config.address_of), not a setting.
    fields = {f for f in service.settings.model_fields if f.endswith("_service_addr")}
    assert fields == {service.address_variable(c).lower() for c in service.calls}


def test_each_service_starts_after_the_services_it_calls():
    order = [service.name for service in catalogue.CATALOGUE.in_start_order()]
    for service in CATALOGUE:
        for callee in CATALOGUE.dependencies(service):
            assert order.index(callee) < order.index(service.name)


def test_services_that_call_each_other_in_a_cycle_are_refused():
    a = Service("a", RateLimitSettings, calls=("b",))
    b = Service("b", RateLimitSettings, calls=("a",))
    cyclic = Catalogue((a, b), issuer=replace(CATALOGUE.issuer, service="a"))

    with pytest.raises(ValueError, match="cycle: a -> b"):
        cyclic.in_start_order()


def test_a_catalogue_names_each_service_once_and_holds_its_token_issuer():
    a = Service("a", RateLimitSettings)

    with pytest.raises(ValueError, match="named twice"):
        Catalogue((a, a), issuer=replace(CATALOGUE.issuer, service="a"))
    with pytest.raises(ValueError, match="token issuer 'user' is not in the catalogue"):
        Catalogue((a,), issuer=CATALOGUE.issuer)


def test_each_global_limit_has_its_setting_in_the_rate_limit_service():
    assert set(GLOBAL_LIMITS.values()) <= set(RateLimitSettings.model_fields)


def test_what_a_service_publishes_and_takes_comes_from_its_contracts():
    order = catalogue.CATALOGUE.entry("order")
    inventory = catalogue.CATALOGUE.entry("inventory")
    published = {m.name for m in order.routed_messages(options_pb2.MESSAGE_KIND_EVENT)}
    taken = {m.name for m in inventory.routed_messages(options_pb2.MESSAGE_KIND_COMMAND)}
    assert {"OrderPlaced", "OrderApproved", "OrderRejected"} <= published
    assert taken == {"ReserveStock", "ReleaseStock"}


def test_a_project_names_its_catalogue_to_the_generators_as_module_and_attribute():
    assert load("services.catalogue:CATALOGUE") is CATALOGUE
    with pytest.raises(ValueError, match=r"services\.issuer:ISSUER is not a Catalogue"):
        load("services.issuer:ISSUER")
