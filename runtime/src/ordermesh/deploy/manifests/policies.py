"""The NetworkPolicies: deny everything, then allow exactly what the catalogue says exists (who
calls whom, who uses the broker, the registry and a store, the gateway's ingress, the web pages
and subgraphs the gateway calls on the services' HTTP ports, the clients of the gateway inside
the cluster, DNS, Prometheus scraping the metrics ports, the monitors reading Prometheus and
Alertmanager)."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from ordermesh.catalogue import Catalogue, Need
from ordermesh.deploy import facts
from ordermesh.deploy.manifests.pods import PART_OF

__all__ = [
    "MONITORING_NAMESPACE",
    "PROMETHEUS_PEER",
    "PROVIDER_PORTS",
    "callers_of",
    "network_policies",
    "store_policies",
]

# The cluster's monitoring, in the namespace "monitoring" (as the Prometheus Operator runs it:
# its pods labelled by name). Prometheus scrapes the metrics ports and sends its alerts to the
# Alertmanager these manifests run; the console reads both (environment.MONITORING_URLS).
MONITORING_NAMESPACE = "monitoring"


def _monitoring_peer(name: str) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
    }


PROMETHEUS_PEER = _monitoring_peer("prometheus")


# What the notification service sends through: SMTP (25, 465, 587) and the HTTPS providers.
PROVIDER_PORTS = (25, 465, 587, 443)


def _pods(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def _ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(
    name: str,
    pods: str | None,
    *,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": pods}} if pods else {},
        "policyTypes": [],
    }
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "spec": spec,
    }


def callers_of(catalogue: Catalogue, callee: str) -> list[str]:
    """Who calls `callee` over gRPC: the services that depend on it, and the gateway for the
    services it routes to and its own (auth, ratelimit)."""
    callers = [s.name for s in catalogue if callee in catalogue.dependencies(s)]
    return ["gateway", *callers] if catalogue.entry(callee).called_by_gateway else callers


def network_policies(catalogue: Catalogue) -> list[dict[str, Any]]:
    policies = [
        _policy("default-deny", None, ingress=[], egress=[]),
        _policy(
            "dns",
            None,
            egress=[
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        ),
    ]
    broker_users = [s.name for s in catalogue if Need.BROKER in s.needs]
    monitors = [s.name for s in catalogue if s.monitors]
    # A rule with no peers would let anyone in: none without a monitor.
    peers = [_pods(name) for name in monitors]
    ports = _ports(facts.ALERTMANAGER_PORT)
    alert_readers = [{"from": peers, "ports": ports}] if peers else []
    for service in catalogue:
        egress = [
            {"to": [_pods(callee)], "ports": _ports(facts.GRPC_PORT)}
            for callee in catalogue.dependencies(service)
        ]
        egress.append({"to": [_pods("redis")], "ports": _ports(facts.REDIS_PORT)})
        if Need.BROKER in service.needs:
            egress.append({"to": [_pods("rabbitmq")], "ports": _ports(facts.AMQP_PORT)})
        if service.notifies:
            egress.append({"ports": _ports(*PROVIDER_PORTS)})  # mail and providers, anywhere
        if service.calls_gateway:  # as a client does, on its TLS port
            egress.append({"to": [_pods("gateway")], "ports": _ports(facts.GATEWAY_PORT)})
        if service.monitors:  # copies: the scrape rule below names Prometheus too
            egress += [
                {"to": [deepcopy(PROMETHEUS_PEER)], "ports": _ports(facts.PROMETHEUS_PORT)},
                {"to": [_pods("alertmanager")], "ports": _ports(facts.ALERTMANAGER_PORT)},
            ]
        # A rule with no peers would let anyone in: a service nobody calls (the console) has
        # no gRPC rule.
        callers = callers_of(catalogue, service.name)
        ingress = [
            *([{"from": [_pods(c) for c in callers], "ports": _ports(facts.GRPC_PORT)}]
              if callers else []),
            {"from": [PROMETHEUS_PEER], "ports": _ports(facts.METRICS_PORT)},
        ]  # fmt: skip
        if service.graph or service.web:
            # The gateway calls its GraphQL subgraph, or its web pages, on its HTTP server
            # (each call with the internal hops' secret, which it requires).
            ingress.append({"from": [_pods("gateway")], "ports": _ports(facts.METRICS_PORT)})
        policies.append(_policy(service.name, service.name, ingress=ingress, egress=egress))
    routed = [s.name for s in catalogue if s.called_by_gateway]
    registered = [s.name for s in catalogue]
    policies += [
        _policy(
            "gateway",
            "gateway",
            ingress=[
                {"ports": _ports(facts.GATEWAY_PORT)},
                {"from": [PROMETHEUS_PEER], "ports": _ports(facts.AGENT_PORT)},
            ],
            egress=[
                *({"to": [_pods(name)], "ports": _ports(facts.GRPC_PORT)} for name in routed),
                *(
                    {"to": [_pods(s.name)], "ports": _ports(facts.METRICS_PORT)}
                    for s in catalogue
                    if s.graph or s.web
                ),
                {"to": [_pods("redis")], "ports": _ports(facts.REDIS_PORT)},
            ],
        ),
        # Alertmanager: the cluster's Prometheus sends it the alerts, the monitors read them.
        _policy(
            "alertmanager",
            "alertmanager",
            ingress=[
                {"from": [PROMETHEUS_PEER], "ports": _ports(facts.ALERTMANAGER_PORT)},
                *alert_readers,
            ],
        ),
        _policy(
            "redis",
            "redis",
            ingress=[
                {
                    "from": [_pods(name) for name in ["gateway", *registered]],
                    "ports": _ports(facts.REDIS_PORT),
                }
            ],
        ),
        _policy(
            "rabbitmq",
            "rabbitmq",
            ingress=[
                {"from": [_pods(name) for name in broker_users], "ports": _ports(facts.AMQP_PORT)},
                {"from": [_pods("rabbitmq")], "ports": _ports(facts.EPMD_PORT, facts.DIST_PORT)},
                {"from": [PROMETHEUS_PEER], "ports": _ports(facts.RABBITMQ_METRICS_PORT)},
            ],
            egress=[{"to": [_pods("rabbitmq")], "ports": _ports(facts.EPMD_PORT, facts.DIST_PORT)}],
        ),
    ]
    return policies


def store_policies(stores: list[str], *, in_cluster: bool) -> list[dict[str, Any]]:
    """Who reaches the database: the services that keep state; in the cluster (dev's own
    PostgreSQL), or outside it (prod: on the database's port, wherever it is; narrow it to the
    database's address range with an ipBlock, docs/kubernetes.md)."""
    to = [{"to": [_pods("postgres")]}] if in_cluster else [{}]
    policies = [
        _policy(
            f"{name}-store", name, egress=[{**t, "ports": _ports(facts.POSTGRES_PORT)} for t in to]
        )
        for name in stores
    ]
    if in_cluster:
        clients = [*stores, "postgres-roles"]
        policies += [
            _policy(
                "postgres-roles",
                "postgres-roles",
                egress=[{"to": [_pods("postgres")], "ports": _ports(facts.POSTGRES_PORT)}],
            ),
            _policy(
                "postgres",
                "postgres",
                ingress=[
                    {
                        "from": [_pods(name) for name in clients],
                        "ports": _ports(facts.POSTGRES_PORT),
                    }
                ],
            ),
        ]
    return policies
