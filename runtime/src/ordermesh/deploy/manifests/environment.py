"""A container's environment in the manifests: ordermesh.deploy.environment's decisions spelt as
Secret references and `$(VAR)` (`KubernetesTarget`), with what is Kubernetes' own around them (the
pod's name and address, the drain within the grace period, prod's sizes, mutual TLS's files).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ordermesh.catalogue import Service
from ordermesh.deploy import facts
from ordermesh.deploy.environment import (
    BROKER,
    INTERNAL_TOKEN,
    POLICY_SIGNING_KEY,
    POLICY_VERIFY_KEY,
    REGISTRY,
    STORE,
    environment,
    internal_hops,
)
from ordermesh.deploy.manifests.policies import MONITORING_NAMESPACE
from ordermesh.deploy.manifests.secrets import (
    INTERNAL_SECRET,
    POLICY_SIGNING_SECRET,
    POLICY_VERIFY_SECRET,
    RABBITMQ_SECRET,
    REDIS_SECRET,
    STORE_SECRET,
    secret_ref,
)
from ordermesh.deploy.project import Project, Step

__all__ = [
    "GATEWAY_CA_CONFIGMAP",
    "GATEWAY_CA_DIR",
    "GATEWAY_URL",
    "GRPC_TLS_DIR",
    "MONITORING_URLS",
    "PASSWORDS",
    "SECRET_KEYS",
    "KubernetesTarget",
    "entries",
    "field_ref",
    "internal_env",
    "passwords",
    "rabbitmq_url",
    "service_env",
    "serving_env",
    "step_env",
    "tls_env",
]

# Where a service's container finds its certificate, key and CA in prod (its Secret's files).
GRPC_TLS_DIR = Path("/etc/ordermesh/grpc-tls")
# Where a client of the gateway inside the cluster (the console) reaches it: its Service, on
# its TLS port (the gateway's certificate names `gateway`), verified with the CA of the
# ConfigMap GATEWAY_CA_CONFIGMAP (key `ca.crt`; created by the operator: a CA is no secret),
# mounted at GATEWAY_CA_DIR.
GATEWAY_URL = f"https://gateway:{facts.GATEWAY_PORT}"
GATEWAY_CA_CONFIGMAP = "ordermesh-gateway-ca"
GATEWAY_CA_DIR = Path("/etc/ordermesh/gateway-ca")
# The cluster's Prometheus, as the Prometheus Operator serves it in the namespace "monitoring"
# (the Service it makes), and the Alertmanager these manifests run (.monitoring);
# an overlay patches them for others.
MONITORING_URLS = {
    "PROMETHEUS_URL": (
        f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:{facts.PROMETHEUS_PORT}"
    ),
    "ALERTMANAGER_URL": f"http://alertmanager:{facts.ALERTMANAGER_PORT}",
}


def field_ref(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def tls_env() -> list[dict[str, Any]]:
    """Mutual TLS for a service's container (ordermesh.tls): the files of its mounted Secret."""
    return [
        {"name": f"GRPC_TLS_{variable}", "value": str(GRPC_TLS_DIR / key)}
        for variable, key in (("CERT", "tls.crt"), ("KEY", "tls.key"), ("CA", "ca.crt"))
    ]


def rabbitmq_url(nodes: int) -> str:
    """The services' RABBITMQ_URL: the Service for one node; each node's address for a
    cluster (the connection tries them in turn, ordermesh.broker)."""
    if nodes == 1:
        return f"amqp://ordermesh:$(RABBITMQ_PASSWORD)@rabbitmq:{facts.AMQP_PORT}/"
    return ",".join(
        f"amqp://ordermesh:$(RABBITMQ_PASSWORD)@rabbitmq-{n}.rabbitmq-nodes:{facts.AMQP_PORT}/"
        for n in range(nodes)
    )


# The variables the URLs of the registry and the broker refer to by `$(NAME)`: each its
# Secret's `password`, defined before them (Kubernetes expands `$(NAME)` only from variables
# defined before).
PASSWORDS = {
    REGISTRY: ("REDIS_PASSWORD", REDIS_SECRET),
    BROKER: ("RABBITMQ_PASSWORD", RABBITMQ_SECRET),
}
# The secrets ordermesh.deploy.environment names: each a Secret's key.
SECRET_KEYS = {
    POLICY_VERIFY_KEY: (POLICY_VERIFY_SECRET, "verify-key"),
    POLICY_SIGNING_KEY: (POLICY_SIGNING_SECRET, "signing-key"),
    INTERNAL_TOKEN: (INTERNAL_SECRET, "token"),
}


class KubernetesTarget:
    """Kubernetes' spelling of each variable (ordermesh.deploy.environment.Target): an env entry's
    `value` or `valueFrom`, its name added by `entries`."""

    def __init__(self, *, broker_nodes: int = 1):
        self.broker_nodes = broker_nodes

    def registry(self) -> dict[str, Any]:
        return {"value": f"redis://:$(REDIS_PASSWORD)@redis:{facts.REDIS_PORT}/0"}

    def broker(self) -> dict[str, Any]:
        return {"value": rabbitmq_url(self.broker_nodes)}

    def store(self, service: str) -> dict[str, Any]:
        return secret_ref(STORE_SECRET, service)

    def address(self, callee: str, *, variable: str) -> dict[str, Any]:
        # Used while the registry does not answer: the headless Service resolves to the pods.
        return {"value": f"{callee}:{facts.GRPC_PORT}"}

    def secret(self, name: str) -> dict[str, Any]:
        return secret_ref(*SECRET_KEYS[name])

    def providers(self) -> dict[str, dict[str, Any]]:
        # The notifier's providers come whole from NOTIFICATION_SECRET (`envFrom`, .services).
        return {}

    def gateway(self) -> dict[str, dict[str, Any]]:
        return {
            "GATEWAY_URL": {"value": GATEWAY_URL},
            "GATEWAY_CA": {"value": str(GATEWAY_CA_DIR / "ca.crt")},
        }

    def monitoring(self) -> dict[str, dict[str, Any]]:
        # No trace viewer, and no log files (the pods log to their output).
        return {name: {"value": url} for name, url in MONITORING_URLS.items()}

    def value(self, text: str) -> dict[str, Any]:
        return {"value": text}


def entries(env: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, **value} for name, value in env.items()]


def passwords(env: Mapping[str, object]) -> list[dict[str, Any]]:
    """The passwords the URLs among `env` refer to."""
    return [
        {"name": password, **secret_ref(secret, "password")}
        for variable, (password, secret) in PASSWORDS.items()
        if variable in env
    ]


def internal_env() -> list[dict[str, Any]]:
    """The secret of the internal hops, for Envoy and the federation gateway
    (ordermesh.deploy.environment gives it to the agent and the services with a subgraph too)."""
    return entries(internal_hops(KubernetesTarget()))


def _sized(env: list[dict[str, Any]], *, broker_nodes: int, pool_size: int) -> list[dict[str, Any]]:
    """`env` with the sizes of prod's cluster after what they size: the pool of each store's
    connections, the members of each quorum queue."""
    sized = []
    for entry in env:
        sized.append(entry)
        if entry["name"] == STORE and pool_size:
            sized.append({"name": "STORE_POOL_SIZE", "value": str(pool_size)})
        if entry["name"] == BROKER and broker_nodes > 1:
            sized.append({"name": "RABBITMQ_QUORUM_SIZE", "value": str(broker_nodes)})
    return sized


def service_env(
    project: Project, service: Service, *, broker_nodes: int = 1, pool_size: int = 0
) -> list[dict[str, Any]]:
    """The environment of a service's container (its serving one and its steps'): the
    passwords first, then what is read whole from Secrets, then how the pod runs, then the
    values that refer to the passwords."""
    target = KubernetesTarget(broker_nodes=broker_nodes)
    decided = environment(
        project.catalogue, service, target, serving=False, catalogue_at=project.catalogue_at
    )
    read = [e for e in entries(decided) if "valueFrom" in e]
    given = [e for e in entries(decided) if "valueFrom" not in e]
    running = [
        {"name": "LOG_LEVEL", "value": "INFO"},
        {"name": "GRPC_HOST", "value": "0.0.0.0"},
        {"name": "GRPC_PORT", "value": str(facts.GRPC_PORT)},
        {"name": "METRICS_PORT", "value": str(facts.METRICS_PORT)},
        {"name": "INSTANCE_ID", **field_ref("metadata.name")},
        # Registered in the registry: others (and Envoy) reach this pod at its own address.
        {"name": "ADVERTISED_HOST", **field_ref("status.podIP")},
        {"name": "DRAIN_DELAY_S", "value": str(facts.DRAIN_DELAY_S)},
        {"name": "SHUTDOWN_GRACE_S", "value": str(facts.SHUTDOWN_GRACE_S)},
    ]
    sizes = {"broker_nodes": broker_nodes, "pool_size": pool_size}
    return [*passwords(decided), *_sized(read, **sizes), *running, *_sized(given, **sizes)]


def serving_env(
    project: Project,
    service: Service,
    *,
    broker_nodes: int = 1,
    pool_size: int = 0,
    mutual_tls: bool = False,
) -> list[dict[str, Any]]:
    """The environment of the container that serves `service`: `service_env`, what only its
    serving process holds (the internal hops' secret if it has a GraphQL subgraph), and its
    certificate's files with `mutual_tls` (never its pod's init steps, which call no service)."""
    target = KubernetesTarget(broker_nodes=broker_nodes)
    at = project.catalogue_at
    steps = environment(project.catalogue, service, target, serving=False, catalogue_at=at)
    decided = environment(project.catalogue, service, target, catalogue_at=at)
    serving = {k: v for k, v in decided.items() if k not in steps}
    env = [*service_env(project, service, broker_nodes=broker_nodes, pool_size=pool_size)]
    env += entries(serving)
    return [*env, *tls_env()] if mutual_tls else env


def step_env(
    project: Project, step: Step, *, broker_nodes: int = 1, pool_size: int = 0
) -> list[dict[str, Any]]:
    """A step's environment (ordermesh.deploy.project.Step): its service's settings, then its
    own values, then its secrets, each from its Secret's key."""
    service = project.catalogue.entry(step.service)
    return [
        *service_env(project, service, broker_nodes=broker_nodes, pool_size=pool_size),
        *({"name": name, "value": value} for name, value in step.settings.items()),
        *({"name": name, **secret_ref(key.secret, key.key)} for name, key in step.secrets.items()),
    ]
