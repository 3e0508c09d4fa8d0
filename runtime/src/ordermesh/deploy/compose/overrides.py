"""compose.yaml's override files, rendered with it (`python -m ordermesh.deploy.compose`).

- deploy/compose.host-network.yaml: every container on the host's network, bound to
  127.0.0.1, on the ports the env file gives (for machines that allow no bridge
  network);
- deploy/compose.mongodb.yaml: the stores on a MongoDB replica set instead of PostgreSQL. No
  MongoDB server can be installed on the runtime's own machines: this override is validated,
  never run.
"""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import facts
from ordermesh.deploy.compose import (
    GATEWAY_AGENT_PORT,
    GATEWAY_PORT,
    GRAPHQL_PORT,
    MONGODB_IMAGE,
    SUBGRAPHS_PORT,
    overridable,
)
from ordermesh.deploy.compose.monitoring import (
    JAEGER_LISTENERS,
    PROMETHEUS_CONFIG,
    prometheus_config,
)
from ordermesh.deploy.project import Project

__all__ = ["Reset", "ResetValue", "host_network", "mongodb"]

MONGODB = f"${{MONGODB_HOST:-mongodb}}:${{MONGODB_PORT:-{facts.MONGODB_PORT}}}"

# The monitoring's ports on the host's network, each one the env file may move (a host where
# another Prometheus listens; the container tests, on free ports).
PROMETHEUS_PORT = overridable("PROMETHEUS_PORT", facts.PROMETHEUS_PORT)
ALERTMANAGER_PORT = overridable("ALERTMANAGER_PORT", facts.ALERTMANAGER_PORT)
GATEWAY_ADMIN_PORT = overridable("GATEWAY_ADMIN_PORT", facts.GATEWAY_ADMIN_PORT)

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
        "GATEWAY_ADMIN": f"127.0.0.1:{GATEWAY_ADMIN_PORT}",
        "GATEWAY_AGENT": f"127.0.0.1:{GATEWAY_AGENT_PORT}",
    },
    "grafana": {
        "PROMETHEUS_ADDRESS": f"127.0.0.1:{PROMETHEUS_PORT}",
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
    },
    "jaeger": {variable: f"127.0.0.1:{port}" for variable, port in JAEGER_LISTENERS.items()},
}
# The variables of LOOPBACK_LISTEN set only where the base file sets them.
ADDRESSES_GIVEN = {"GRAPHQL_ADDRESS"}
# The servers whose listening address is the last argument of their command.
LISTEN_ARGUMENT = {
    "prometheus": f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
    "alertmanager": f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
}
# What the clients of the gateway and of the monitoring are told, on the loopback address
# (the gateway's certificate names 127.0.0.1).
LOOPBACK_CLIENTS = {
    "GATEWAY_URL": overridable("GATEWAY_URL", f"https://127.0.0.1:{GATEWAY_PORT}"),
    "PROMETHEUS_URL": overridable("PROMETHEUS_URL", f"http://127.0.0.1:{PROMETHEUS_PORT}"),
    "ALERTMANAGER_URL": overridable("ALERTMANAGER_URL", f"http://127.0.0.1:{ALERTMANAGER_PORT}"),
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
        environment = spec.get("environment", {})
        if name in LOOPBACK_LISTEN:
            # What it has of them (the gateway's bootstrap names the federation gateway's
            # address only where there is one).
            services[name]["environment"] = {
                variable: value
                for variable, value in LOOPBACK_LISTEN[name].items()
                if variable in environment or variable not in ADDRESSES_GIVEN
            }
        if "GRPC_HOST" in environment:
            # Replicas share the host's ports: each takes a free one, published in the
            # registry (and in PORT_FILE, for its health check).
            services[name]["environment"] = {
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": "0",
                "METRICS_PORT": "0",
                **{k: v for k, v in LOOPBACK_CLIENTS.items() if k in environment},
            }
        if name == "postgres":
            services[name]["command"] = ["postgres", "-c", "listen_addresses=127.0.0.1"]
        if name in LISTEN_ARGUMENT:
            services[name]["command"] = [
                *base["services"][name]["command"][:-1],
                LISTEN_ARGUMENT[name],
            ]
    target = overridable("ALERTMANAGER_TARGET", f"127.0.0.1:{ALERTMANAGER_PORT}")
    return {
        "services": services,
        "configs": {PROMETHEUS_CONFIG: {"content": prometheus_config(target)}},
    }


class Reset(list[Any]):
    """An empty list that replaces the base file's instead of adding to it (`!reset []`)."""


class ResetValue:
    """A value the base file had, taken away (`!reset ''`)."""


def mongodb(project: Project) -> dict[str, Any]:
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
    for name in project.stores():
        services[name] = {
            "environment": {"STORE_URL": url, "STORE_DATABASE": name},
            "depends_on": ["mongodb-init"],
        }
    for step in project.steps:
        if step.service in services:
            services[step.name] = dict(services[step.service])
    return {"services": services, "volumes": {"mongodb": {}}}
