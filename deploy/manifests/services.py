"""Each service of the catalogue as a Deployment (its schema step and, for the token issuer,
the admin's account, as init containers) with a headless Service."""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Need, Service

from deploy import facts
from deploy.manifests.environment import (
    GATEWAY_CA_CONFIGMAP,
    GATEWAY_CA_DIR,
    admin_env,
    serving_env,
)
from deploy.manifests.pods import (
    app_container,
    headless_service,
    labels,
    pod_template,
    rolling,
    scratch,
    selector,
    service_probes,
)
from deploy.manifests.secrets import NOTIFICATION_SECRET, STORE_OWNER_SECRET, secret_ref
from services import catalogue


def service_deployment(service: Service) -> dict[str, Any]:
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
        serving_env(service),
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
                ["python", "-m", "services.schema", service.name],
                [{"name": "STORE_URL", **secret_ref(STORE_OWNER_SECRET, service.name)}],
                mounts,
            )
        )
    if service.name == catalogue.CATALOGUE.issuer.service:
        # The admin account exists before the issuer serves (idempotent: --if-missing).
        init.append(
            app_container(
                "create-admin",
                [
                    "sh",
                    "-c",
                    "printenv ADMIN_PASSWORD | exec python -m services.user create-admin "
                    '--email "$ADMIN_EMAIL" --password-stdin --if-missing',
                ],
                admin_env(service),
                mounts,
            )
        )
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


def services() -> list[dict[str, Any]]:
    """base/services.yaml: every service, in start order."""
    rendered = []
    for service in catalogue.CATALOGUE.in_start_order():
        rendered += [
            service_deployment(service),
            headless_service(
                service.name,
                "service",
                [("grpc", facts.GRPC_PORT), ("metrics", facts.METRICS_PORT)],
            ),
        ]
    return rendered
