"""What prod changes on base: every service and the gateway with several replicas spread
across nodes, a PodDisruptionBudget and a HorizontalPodAutoscaler on CPU each, a RabbitMQ
cluster, the settings for the database's connections, and mutual TLS on every gRPC hop inside
the cluster (each service from a Secret of its own, probed in its container)."""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Service
from ordermesh.deploy.manifests.environment import GRPC_TLS_DIR, serving_env, step_env
from ordermesh.deploy.manifests.gateway import UPSTREAM_TLS_DIR
from ordermesh.deploy.manifests.pods import PART_OF, selector, service_probes, tls_volume
from ordermesh.deploy.manifests.secrets import GATEWAY_CLIENT_TLS_SECRET, grpc_tls_secret
from ordermesh.deploy.project import Project

__all__ = [
    "NO_FAULTS",
    "PROD_MAX_REPLICAS",
    "PROD_POSTGRES_CONNECTIONS",
    "PROD_REPLICAS",
    "RABBITMQ_PROD_NODES",
    "autoscalers",
    "budgets",
    "gateway_patch",
    "prod_patches",
    "service_patch",
    "workloads",
]

PROD_REPLICAS = 3


PROD_MAX_REPLICAS = 10


RABBITMQ_PROD_NODES = 3


# The connections prod's PostgreSQL must allow (docs/kubernetes.md). A pod of a store-backed
# service opens at most STORE_POOL_SIZE and its relay's listener; at the autoscalers' maximum
# they fit (Catalogue.pool_size_within; the example's: 10 pods x 5 services x (5 + 1) = 300).
# A catalogue with so many store-backed services that no pool fits is refused: raise it.
PROD_POSTGRES_CONNECTIONS = 300


def workloads(project: Project) -> list[str]:
    """The Deployments prod runs with several replicas: every service, and the gateway."""
    return [s.name for s in project.catalogue.in_start_order()] + ["gateway"]


def prod_patches(project: Project) -> list[dict[str, Any]]:
    patches: list[dict[str, Any]] = []
    for name in workloads(project):
        spread = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": when,
                "labelSelector": selector(name),
            }
            for key, when in (
                ("kubernetes.io/hostname", "DoNotSchedule"),
                ("topology.kubernetes.io/zone", "ScheduleAnyway"),
            )
        ]
        patches.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": PROD_REPLICAS,
                    "template": {"spec": {"topologySpreadConstraints": spread}},
                },
            }
        )
    patches += [service_patch(project, s) for s in project.catalogue.in_start_order()]
    patches.append(gateway_patch())
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector("rabbitmq"),
        }
    ]
    patches.append(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "rabbitmq"},
            "spec": {
                "replicas": RABBITMQ_PROD_NODES,
                "template": {"spec": {"topologySpreadConstraints": spread}},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "20Gi"}},
                        },
                    }
                ],
            },
        }
    )
    return patches


# No fault switch can be turned on in prod: a service or agent given a flag file refuses to
# start (ordermesh.config.FaultSwitchSettings).
NO_FAULTS = {"name": "FAULT_SWITCHES_FORBIDDEN", "value": "true"}


def service_patch(project: Project, service: Service) -> dict[str, Any]:
    """A service in prod: its settings for the broker cluster and the database's connections,
    and mutual TLS from its own Secret (its serving container only), probed in the container;
    fault switches forbidden."""
    # The env lists and the probes replaced whole: a merge would put the changed entries
    # first, before the secrets they refer to, and leave the gRPC probe beside the exec one.
    replace: dict[str, Any] = {"$patch": "replace"}
    pool_size = project.catalogue.pool_size_within(PROD_POSTGRES_CONNECTIONS, PROD_MAX_REPLICAS)
    settings = {"broker_nodes": RABBITMQ_PROD_NODES, "pool_size": pool_size}
    probes = service_probes(mutual_tls=True)
    container: dict[str, Any] = {
        "name": service.name,
        "env": [replace, *serving_env(project, service, **settings, mutual_tls=True), NO_FAULTS],
        "volumeMounts": [{"name": "grpc-tls", "mountPath": str(GRPC_TLS_DIR), "readOnly": True}],
        **{name: {**replace, **probe} for name, probe in probes.items()},
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [tls_volume("grpc-tls", grpc_tls_secret(service.name))],
    }
    if steps := project.steps_of(service):
        # Each init container named in order (the schema step first, if it has one), or the
        # merge would put the patched ones first.
        init: list[dict[str, Any]] = (
            [{"name": "schema"}] if service.name in project.stores() else []
        )
        init += [
            {"name": step.name, "env": [replace, *step_env(project, step, **settings)]}
            for step in steps
        ]
        spec["initContainers"] = init
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name},
        "spec": {"template": {"spec": spec}},
    }


def gateway_patch() -> dict[str, Any]:
    """The gateway in prod: Envoy's client certificate for its calls to the services over
    mutual TLS (the prod bootstrap, `gateway_bootstrap(mutual_tls=True)`, names its files);
    fault switches forbidden to its agent."""
    mount = {"name": "gateway-client-tls", "mountPath": str(UPSTREAM_TLS_DIR), "readOnly": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "envoy", "volumeMounts": [mount]}],
                    # The agent runs beside Envoy as a sidecar (an init container that stays).
                    "initContainers": [{"name": "agent", "env": [NO_FAULTS]}],
                    "volumes": [tls_volume("gateway-client-tls", GATEWAY_CLIENT_TLS_SECRET)],
                }
            }
        },
    }


def budgets(project: Project) -> list[dict[str, Any]]:
    found = []
    for name in [*workloads(project), "rabbitmq"]:
        found.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
                "spec": {"maxUnavailable": 1, "selector": selector(name)},
            }
        )
    return found


def autoscalers(project: Project) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": PROD_REPLICAS,
                "maxReplicas": PROD_MAX_REPLICAS,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }
        for name in workloads(project)
    ]
