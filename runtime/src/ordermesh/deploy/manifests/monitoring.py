"""Alertmanager in the cluster: one replica (no gossip cluster), configured from
the project's alertmanager.yml (a ConfigMap of the kustomization), its silences and notification log
in memory. The cluster's own Prometheus scrapes the pods and evaluates the project's rules.yml; it
sends its alerts here (docs/kubernetes.md), and the console reads them."""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import facts
from ordermesh.deploy.manifests.pods import (
    RESOURCES,
    cluster_service,
    container_security,
    labels,
    pod_template,
    scratch,
    selector,
)

__all__ = ["ALERTMANAGER_CONFIG", "alertmanager"]

# The ConfigMap (kustomize's configMapGenerator) holding the project's alertmanager.yml.
ALERTMANAGER_CONFIG = "alertmanager-config"
# The image's user: nobody.
USER = 65534


def _http_probe(path: str, *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": facts.ALERTMANAGER_PORT},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def alertmanager() -> list[dict[str, Any]]:
    volumes, mounts = scratch("/alertmanager")
    volumes.append({"name": "config", "configMap": {"name": ALERTMANAGER_CONFIG}})
    mounts.append({"name": "config", "mountPath": "/etc/alertmanager", "readOnly": True})
    container = {
        "name": "alertmanager",
        "image": facts.ALERTMANAGER_IMAGE,
        "args": [
            "--config.file=/etc/alertmanager/alertmanager.yml",
            "--storage.path=/alertmanager",
            "--cluster.listen-address=",
            f"--web.listen-address=:{facts.ALERTMANAGER_PORT}",
        ],
        "ports": [{"name": "http", "containerPort": facts.ALERTMANAGER_PORT}],
        "resources": RESOURCES["alertmanager"],
        "securityContext": container_security(USER),
        "volumeMounts": mounts,
        "livenessProbe": _http_probe("/-/healthy", period_s=10, failures=3),
        "readinessProbe": _http_probe("/-/ready", period_s=5, failures=2),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "alertmanager", "labels": labels("alertmanager", "monitoring")},
        "spec": {
            "replicas": 1,
            "selector": selector("alertmanager"),
            "strategy": {"type": "Recreate"},
            "template": pod_template(
                "alertmanager",
                "monitoring",
                {"containers": [container], "volumes": volumes},
                USER,
            ),
        },
    }
    service = cluster_service("alertmanager", "monitoring", "http", facts.ALERTMANAGER_PORT)
    return [deployment, service]
