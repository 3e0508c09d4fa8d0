"""compose.yaml's override files, rendered with it (`python -m deploy.compose`).

- deploy/compose.host-network.yaml: every container on the host's network, bound to
  127.0.0.1, on the ports the env file gives (this project's machines allow no bridge
  network);
- deploy/compose.mongodb.yaml: the stores on a MongoDB replica set instead of PostgreSQL. No
  MongoDB server can be installed on this project's machines: this override is validated,
  never run.
"""

from __future__ import annotations

from typing import Any

from deploy import facts
from deploy.compose import GATEWAY_AGENT_PORT, GRAPHQL_PORT, MONGODB_IMAGE, SUBGRAPHS_PORT
from services import catalogue
from services.catalogue import Need

__all__ = ["Reset", "ResetValue", "host_network", "mongodb"]

MONGODB = f"${{MONGODB_HOST:-mongodb}}:${{MONGODB_PORT:-{facts.MONGODB_PORT}}}"

# On the host's network, everything listens on the loopback address only.
LOOPBACK_LISTEN = {
    "rabbitmq": {"RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "ERL_EPMD_ADDRESS": "127.0.0.1"},
    "redis": {"REDIS_LISTEN": "127.0.0.1"},
    "gateway-config": {
        "GATEWAY_LISTEN": "127.0.0.1",
        "GRAPHQL_ADDRESS": f"127.0.0.1:{GRAPHQL_PORT}",
    },
    "graphql": {
        "HOST": "127.0.0.1",
        "SUBGRAPHS_URL": f"http://127.0.0.1:{SUBGRAPHS_PORT}",
    },
    "gateway-agent": {"HOST": "127.0.0.1"},
    "prometheus-targets": {
        "GATEWAY_ADMIN": f"127.0.0.1:{facts.GATEWAY_ADMIN_PORT}",
        "GATEWAY_AGENT": f"127.0.0.1:{GATEWAY_AGENT_PORT}",
    },
    "grafana": {
        "PROMETHEUS_ADDRESS": f"127.0.0.1:{facts.PROMETHEUS_PORT}",
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
    },
}


def host_network(base: dict[str, Any]) -> dict[str, Any]:
    """Every container on the host's network, listening on 127.0.0.1 (nothing published:
    it listens there; no host name of its own: it has the host's)."""
    services: dict[str, Any] = {}
    for name, spec in base["services"].items():
        services[name] = {"network_mode": "host"}
        if "ports" in spec:
            services[name]["ports"] = Reset()
        if "hostname" in spec:
            services[name]["hostname"] = ResetValue()
        if name in LOOPBACK_LISTEN:
            services[name]["environment"] = LOOPBACK_LISTEN[name]
        if "GRPC_HOST" in spec.get("environment", {}):
            # Replicas share the host's ports: each takes a free one, published in the
            # registry (and in PORT_FILE, for its health check).
            services[name]["environment"] = {
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": "0",
                "METRICS_PORT": "0",
            }
        if name == "postgres":
            services[name]["command"] = ["postgres", "-c", "listen_addresses=127.0.0.1"]
        if name == "prometheus":
            services[name]["command"] = [
                *base["services"][name]["command"][:-1],
                f"--web.listen-address=127.0.0.1:{facts.PROMETHEUS_PORT}",
            ]
    return {"services": services}


class Reset(list[Any]):
    """An empty list that replaces the base file's instead of adding to it (`!reset []`)."""


class ResetValue:
    """A value the base file had, taken away (`!reset ''`)."""


def mongodb() -> dict[str, Any]:
    """The stores on a MongoDB replica set instead of PostgreSQL."""
    services: dict[str, Any] = {
        "mongodb": {
            "image": MONGODB_IMAGE,
            "command": ["mongod", "--replSet", "rs0", "--bind_ip_all"],
            "volumes": ["mongodb:/data/db"],
            "restart": "unless-stopped",
        },
        # Transactions need a replica set: initiate it once (an error when it exists is fine).
        "mongodb-init": {
            "image": MONGODB_IMAGE,
            "command": [
                "sh",
                "-c",
                'mongosh --host "$$MONGODB_HOST" --eval '
                "'try { rs.status() } catch (e) { rs.initiate() }'",
            ],
            "environment": {"MONGODB_HOST": MONGODB},
            "restart": "on-failure",
            "depends_on": ["mongodb"],
        },
    }
    url = f"mongodb://{MONGODB}/?replicaSet=rs0"
    for service in catalogue.in_start_order():
        if Need.STORE in service.needs:
            services[service.name] = {
                "environment": {"STORE_URL": url, "STORE_DATABASE": service.name},
                "depends_on": ["mongodb-init"],
            }
    services["create-admin"] = dict(services["user"])
    return {"services": services, "volumes": {"mongodb": {}}}
