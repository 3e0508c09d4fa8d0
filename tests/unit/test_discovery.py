"""The gateway's EDS responses: every registered instance Envoy can take, and nothing it would
refuse the whole update for (a real Envoy's view: tests/integration/test_gateway_endpoints.py)."""

import pytest
from ordermesh.gateway.discovery import assignment
from ordermesh.registry import Instance


def instance(id: str, address: str, **fields) -> Instance:
    return Instance(service="order", instance_id=id, address=address, **fields)


def endpoints(response: dict) -> list[tuple[str, str, int]]:
    [resource] = response["resources"]
    return [
        (lb["endpoint"]["hostname"], socket["address"], socket["port_value"])
        for locality in resource["endpoints"]
        for lb in locality["lb_endpoints"]
        for socket in [lb["endpoint"]["address"]["socket_address"]]
    ]


@pytest.mark.parametrize("host", ["order-3", "localhost", "order.internal.example", "10.0.0.256"])
def test_an_instance_registered_with_a_host_name_is_left_out_and_the_others_kept(host):
    instances = [
        instance("order-1", "10.0.0.7:50051"),
        instance("order-3", f"{host}:50051"),
        instance("order-2", "127.0.0.1:50052", draining=True),
    ]

    response = assignment("order", instances, 4)

    assert endpoints(response) == [("order-1", "10.0.0.7", 50051), ("order-2", "127.0.0.1", 50052)]
    [resource] = response["resources"]
    lbs = resource["endpoints"][0]["lb_endpoints"]
    assert [lb["health_status"] for lb in lbs] == ["UNKNOWN", "DRAINING"]


def test_an_ipv6_address_is_given_to_envoy_without_its_brackets():
    response = assignment("order", [instance("order-1", "[::1]:50051")], 1)

    assert endpoints(response) == [("order-1", "::1", 50051)]


def test_a_subgraph_cluster_takes_only_metrics_ports_envoy_accepts():
    instances = [
        instance("order-1", "127.0.0.1:50051", metrics_port=9101),
        instance("order-2", "127.0.0.1:50052"),  # serves no subgraph
        instance("order-3", "127.0.0.1:50053", metrics_port=70000),
        instance("order-4", "order-4:50054", metrics_port=9104),
    ]

    response = assignment("order-graph", instances, 1, http=True)

    assert endpoints(response) == [("order-1", "127.0.0.1", 9101)]


def test_a_cluster_of_only_unusable_instances_is_empty_not_refused():
    response = assignment("order", [instance("order-1", "order-1:50051")], 1)

    assert response["resources"][0]["endpoints"] == []
