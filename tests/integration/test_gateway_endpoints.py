"""A real Envoy follows the registry through the gateway's EDS files, whatever one entry holds.

The registry (the session's Redis, a namespace of this test's own) is watched and written to EDS
files as the gateway's agent does (`Watcher` -> `EdsFiles.write`); the Envoy reads them as the
gateway's does (an EDS cluster from a watched file). Nothing listens at the instances'
addresses: what is checked is which endpoints Envoy holds (its admin `/clusters`), not calls.
"""

from __future__ import annotations

import json
import uuid

import pytest
from ordermesh.gateway.discovery import EdsFiles
from ordermesh.gateway.envoy import eds_path
from ordermesh.registry import Instance, Registry, Watcher

from harness.shop import eventually

CLUSTER = "order"


def eds_bootstrap(eds_dir) -> dict:
    return {
        "node": {"id": "discovery-test", "cluster": "discovery-test"},
        "static_resources": {
            "clusters": [
                {
                    "name": CLUSTER,
                    "type": "EDS",
                    "connect_timeout": "1s",
                    "eds_cluster_config": {
                        "eds_config": {
                            "resource_api_version": "V3",
                            "path_config_source": {
                                "path": str(eds_path(eds_dir, CLUSTER)),
                                "watched_directory": {"path": str(eds_dir)},
                            },
                        }
                    },
                }
            ]
        },
    }


def endpoints_of(envoy) -> set[str]:
    """The `host:port` of each endpoint Envoy holds for the cluster."""
    statuses = json.loads(envoy.admin("/clusters?format=json"))["cluster_statuses"]
    [cluster] = [c for c in statuses if c["name"] == CLUSTER]
    return {
        f"{s['address']['socket_address']['address']}:{s['address']['socket_address']['port_value']}"
        for s in cluster.get("host_statuses", [])
    }


def order(n: int, host: str = "127.0.0.1") -> Instance:
    return Instance(service=CLUSTER, instance_id=f"order-{n}", address=f"{host}:{50050 + n}")


@pytest.fixture
async def registry(redis_server):
    registry = Registry(redis_server.url, namespace=f"discovery-{uuid.uuid4().hex[:8]}")
    yield registry
    await registry.close()


async def test_a_registry_entry_with_a_host_name_does_not_freeze_the_cluster(
    registry, envoy_factory, tmp_path
):
    eds_dir = tmp_path / "eds"
    files = EdsFiles(eds_dir)
    await registry.put(order(1), ttl_s=30)
    watcher = Watcher(registry, [CLUSTER], on_change=files.write, refresh_s=0.2)
    await watcher.start()
    try:
        envoy = envoy_factory(eds_bootstrap(eds_dir))
        await eventually(lambda: endpoints_of(envoy) == {"127.0.0.1:50051"}, what="order-1")

        # An instance that advertises a name (e.g. GRPC_HOST=localhost), beside a good one.
        await registry.put(order(2, host="localhost"), ttl_s=30)
        await registry.put(order(3), ttl_s=30)

        await eventually(
            lambda: endpoints_of(envoy) == {"127.0.0.1:50051", "127.0.0.1:50053"},
            timeout_s=5.0,
            what="order-3 beside order-1 (the update refused for order-2's name?)",
        )
        assert envoy.counter(f"cluster.{CLUSTER}.update_rejected") == 0

        # ... and the cluster goes on following the registry while the bad entry stays.
        await registry.remove(order(1))
        await eventually(
            lambda: endpoints_of(envoy) == {"127.0.0.1:50053"}, timeout_s=5.0, what="order-1 gone"
        )
    finally:
        await watcher.stop()
