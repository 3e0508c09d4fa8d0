"""Each service of the catalogue as a Deployment (its schema step and the project's steps of
it, as init containers) with a headless Service."""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Need, Service
from ordermesh.deploy import facts
from ordermesh.deploy.manifests.environment import (
    GATEWAY_CA_CONFIGMAP,
    GATEWAY_CA_DIR,
    serving_env,
    step_env,
)
from ordermesh.deploy.manifests.pods import (
    app_container,
    headless_service,
    labels,
    pod_template,
    rolling,
    scratch,
    selector,
    service_probes,
)
from ordermesh.deploy.manifests.secrets import NOTIFICATION_SECRET, STORE_OWNER_SECRET, secret_ref
from ordermesh.deploy.project import Project

__all__ = ["service_deployment", "services"]


def service_deployment(project: Project, service: Service) -> dict[str, Any]:
    volumes, mounts = scratch("/tmp", "/run/ordermesh")
    own_mounts = mounts
    if service.calls_gateway:
        # The CA it verifies the gateway with (GATEWAY_CA), in its serving container only.
        volumes.append(
            {
                "name": "gateway-ca",
                "configMap": {
                    "name": GATEWAY_CA_CONFIGMAP,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
        )
        own_mounts = [
            *mounts,
            {"name": "gateway-ca", "mountPath": str(GATEWAY_CA_DIR), "readOnly": True},
        ]
    container = app_container(
        service.name,
        list(service.command),
        serving_env(project, service),
        own_mounts,
        envFrom=[{"secretRef": {"name": NOTIFICATION_SECRET}}] if service.notifies else [],
        ports=[
            {"name": "grpc", "containerPort": facts.GRPC_PORT},
            {"name": "metrics", "containerPort": facts.METRICS_PORT},
        ],
        **service_probes(),
    )
    if not container["envFrom"]:
        del container["envFrom"]
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": facts.TERMINATION_GRACE_S,
        "containers": [container],
        "volumes": volumes,
    }
    init: list[dict[str, Any]] = []
    if Need.STORE in service.needs:
        # Its schema, made by its database's owner before the service runs as its runtime role
        # (whose Secret holds no owner's password).
        init.append(
            app_container(
                "schema",
                project.schema_command(service.name),
                [{"name": "STORE_URL", **secret_ref(STORE_OWNER_SECRET, service.name)}],
                mounts,
            )
        )
    # The project's steps of it, in order, before it serves.
    init += [
        app_container(step.name, ["sh", "-c", step.command], step_env(project, step), mounts)
        for step in project.steps_of(service)
    ]
    if init:
        spec["initContainers"] = init
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name, "labels": labels(service.name, "service")},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": selector(service.name),
            "strategy": rolling(),
            "template": pod_template(service.name, "service", spec, 10001),
        },
    }


def services(project: Project) -> list[dict[str, Any]]:
    """base/services.yaml: every service, in start order."""
    rendered = []
    for service in project.catalogue.in_start_order():
        rendered += [
            service_deployment(project, service),
            headless_service(
                service.name,
                "service",
                [("grpc", facts.GRPC_PORT), ("metrics", facts.METRICS_PORT)],
            ),
        ]
    return rendered
