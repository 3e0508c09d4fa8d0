"""The pieces every workload of the manifests is made of: names and labels, the restricted
security context, scratch volumes for a read-only root, probes, requests and limits (from the
processes measured on 2026-12-01, docs/kubernetes.md), the application's container and pod."""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import facts

__all__ = [
    "GRAPHQL_IMAGE",
    "IMAGE",
    "PART_OF",
    "RESOURCES",
    "SERVICE_RESOURCES",
    "app_container",
    "cluster_service",
    "container_security",
    "exec_probe",
    "headless_service",
    "labels",
    "pod_security",
    "pod_template",
    "rolling",
    "scratch",
    "selector",
    "service_probes",
    "tls_volume",
]

# Every workload's `app.kubernetes.io/part-of`: a system the runtime deployed.
PART_OF = "ordermesh"


# The images as base names them: the overlays give each its project's name, registry and tag
# (the application's, and the federation gateway's: ordermesh.deploy.project).
IMAGE = "ordermesh"
GRAPHQL_IMAGE = "ordermesh-graphql"


# Requests and limits, from the processes measured on 2026-12-01 (docs/kubernetes.md): a
# service idles at 89-93 MB RSS; a Python process uses one core at most (the GIL).
SERVICE_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}


RESOURCES = {
    "envoy": {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "256Mi"},
    },
    "agent": SERVICE_RESOURCES,
    "graphql": {
        "requests": {"cpu": "250m", "memory": "192Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    },
    "rabbitmq": {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    },
    "redis": {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    },
    "alertmanager": {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    },
    "postgres": {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    },
}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def container_security(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch(*mounts: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Writable scratch directories (memory-backed) for a read-only root filesystem."""
    names = [m.strip("/").replace("/", "-") for m in mounts]
    volumes = [{"name": n, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}} for n in names]
    return volumes, [{"name": n, "mountPath": m} for n, m in zip(names, mounts, strict=True)]


def _grpc_probe(service: str, *, period_s: int, failures: int) -> dict[str, Any]:
    grpc: dict[str, Any] = {"port": facts.GRPC_PORT}
    if service:
        grpc["service"] = service
    return {
        "grpc": grpc,
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def exec_probe(command: list[str], *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": command},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def tls_volume(name: str, secret: str) -> dict[str, Any]:
    # Readable by the pod's group (fsGroup, which each container's user is in), no one else.
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}}


def service_probes(*, mutual_tls: bool = False) -> dict[str, dict[str, Any]]:
    """A service's probes, against its gRPC health service: readiness asks the whole server
    (its dependencies), startup and liveness `liveness` (the process; ordermesh.grpc.LIVENESS);
    startup allows 130 s (a service waits up to 120 s for its store and broker at start).

    Plaintext: the kubelet's own gRPC probes. With mutual TLS those cannot connect (they speak
    plaintext only): `python -m ordermesh.probe` runs in the container instead, presenting the
    pod's certificate. A run costs 0.15-0.18 s of CPU (a Python start, grpc and cryptography
    imported; measured 2026-12), so readiness and liveness run half as often as the gRPC
    probes: 0.027 cores a pod, 11 % of its CPU request (at 5 s and 10 s: 22 %, which the
    autoscaler would count towards its 70 %). A probe's timeout covers the start."""
    if not mutual_tls:
        return {
            "startupProbe": _grpc_probe("liveness", period_s=2, failures=65),
            "livenessProbe": _grpc_probe("liveness", period_s=10, failures=3),
            "readinessProbe": _grpc_probe("", period_s=5, failures=2),
        }
    probe = ["python", "-m", "ordermesh.probe"]
    liveness = [*probe, "--service", "liveness"]
    return {
        "startupProbe": exec_probe(liveness, period_s=2, failures=65),
        "livenessProbe": exec_probe(liveness, period_s=20, failures=3),
        "readinessProbe": exec_probe(probe, period_s=10, failures=2),
    }


def app_container(
    name: str,
    command: list[str],
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": command,
        "env": env,
        "resources": SERVICE_RESOURCES,
        "securityContext": container_security(10001),
        "volumeMounts": mounts,
        **extra,
    }


def pod_template(name: str, component: str, spec: dict[str, Any], user: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": labels(name, component)}
    scraped = {
        "service": facts.METRICS_PORT,
        "gateway": facts.AGENT_PORT,
    }  # the gateway's: its agent's
    if component in scraped:
        metadata["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(scraped[component]),
        }
    return {
        "metadata": metadata,
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(user),
            **spec,
        },
    }


def rolling() -> dict[str, Any]:
    """A new pod serves before an old one goes: never fewer ready replicas than wanted."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def headless_service(
    name: str, component: str, ports: list[tuple[str, int]], *, pods: str = "", **extra: Any
) -> dict[str, Any]:
    """A Service without a virtual IP: its name resolves to the pods' own addresses."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(pods or name, component)},
        "spec": {
            "clusterIP": "None",
            "selector": {"app.kubernetes.io/name": pods or name},
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
            **extra,
        },
    }


def cluster_service(name: str, component: str, port_name: str, port: int) -> dict[str, Any]:
    """A Service with a virtual IP in front of the pods named `name`, on one port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name, component)},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": port_name, "port": port, "targetPort": port}],
        },
    }
