"""Kubernetes manifests (kustomize), rendered from the service catalogue (`make gen`).

    python -m deploy.kubernetes          writes deploy/kubernetes/{base,overlays/dev,overlays/prod}

- base: the namespace (Pod Security "restricted"), every service of the catalogue as a
  Deployment with a headless Service, the gateway (Envoy, its bootstrap and the contracts in a
  ConfigMap, serving HTTPS and gRPC over TLS with the certificate of the Secret
  `ordermesh-gateway-tls`; its agent as a sidecar whose readiness, a verified edge policy and
  endpoints, is the pod's; the GraphQL federation gateway, our image `ordermesh-graphql`),
  Redis (the registry), a RabbitMQ StatefulSet, and the
  NetworkPolicies: deny everything, then allow exactly what the catalogue says exists (who
  calls whom, who uses the broker, the registry and a store, the gateway's ingress, DNS,
  Prometheus scraping the metrics ports);
- overlays/dev: one replica of everything, a single RabbitMQ node and a PostgreSQL StatefulSet
  (a database per service with its owner and runtime roles, made or brought up to date by the
  Job `postgres-roles` from deploy/postgres/init.sql, deploy/databases.py);
- overlays/prod: every service and the gateway with 3 replicas spread across nodes, a
  PodDisruptionBudget and a HorizontalPodAutoscaler on CPU each, a 3-node RabbitMQ cluster
  (classic config peer discovery, quorum queues of 3 members), PostgreSQL outside the
  cluster (an external or operator-managed database: each service's STORE_URL in a Secret),
  and mutual TLS on every gRPC hop inside the cluster (chassis.tls): each service with the
  certificate of a Secret of its own, probed by `python -m chassis.probe` in its container
  (the kubelet's gRPC probes speak plaintext only), Envoy with a client certificate and its
  own bootstrap (overlays/prod/envoy.json, merged into base's ConfigMap). dev stays plaintext.

A store-backed service's pod first runs the schema step as its database's owner (the init
container `schema`, `python -m services.schema <name>`, the owner's URL from the Secret
`ordermesh-store-owner`); the service then connects as its runtime role (`ordermesh-store`),
which can change no schema nor open another service's database.

Instances find each other as everywhere else: through the Redis registry, each pod registering
its own address (`ADVERTISED_HOST` = the pod IP); the gateway's agent turns the registry into
Envoy's endpoints. The headless Services give the fallback addresses (`<NAME>_SERVICE_ADDR`)
used while the registry does not answer. (docs/kubernetes.md says why.)

Secrets are referenced by name and key, never written here (docs/kubernetes.md lists them);
the edge policy's signing key is in a Secret of its own that only the auth service reads; the
internal hops' secret (INTERNAL_TOKEN) reaches Envoy, its agent, the federation gateway and the
services with a GraphQL subgraph only.
Requests and limits come from measured figures (docs/kubernetes.md). No Kubernetes cluster can
run on this project's machines: these manifests are rendered and validated, not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from deploy import databases
from deploy.compose import ROLES_COMMAND, ROOT, init_sql, stores
from gateway import envoy as gateway_config
from gateway.agent import AgentSettings
from gateway.contracts import DESCRIPTOR_SET, routable_rpcs
from services import catalogue
from services.catalogue import Need, Service

NAMESPACE = "ordermesh"
PART_OF = "ordermesh"
IMAGE = "ordermesh"
ENVOY_IMAGE = "docker.io/envoyproxy/envoy:v1.40.0"
# Our image of Hive Gateway with gateway/graphql's packages (deploy/images.py): the overlays
# name its registry and tag, as the application image's.
GRAPHQL_IMAGE = "ordermesh-graphql"
GRAPHQL_PORT = 4000  # the federation gateway, beside Envoy in its pod
GRAPHQL_FILES = ("gateway.config.mjs", "supergraph.graphql")
RABBITMQ_IMAGE = "docker.io/library/rabbitmq:3.13"
REDIS_IMAGE = "docker.io/library/redis:7.2"
POSTGRES_IMAGE = "docker.io/library/postgres:15"
GRPC_PORT = 50051
METRICS_PORT = 9464
GATEWAY_PORT = 8080
GATEWAY_ADMIN_PORT = 9901  # on 127.0.0.1 inside the pod only
# The gateway's agent: `/ready` (the kubelet's probe) and `/metrics` (Prometheus).
AGENT_PORT = 9902
AMQP_PORT = 5672
EPMD_PORT = 4369
DIST_PORT = 25672
RABBITMQ_METRICS_PORT = 15692
REDIS_PORT = 6379
POSTGRES_PORT = 5432
# The drain (DRAINING in the registry, then in-flight calls finish) fits in the grace period.
DRAIN_DELAY_S = 5
SHUTDOWN_GRACE_S = 20
TERMINATION_GRACE_S = 30
PROD_REPLICAS = 3
PROD_MAX_REPLICAS = 10
RABBITMQ_PROD_NODES = 3
# The connections prod's PostgreSQL must allow (docs/kubernetes.md). A pod of a store-backed
# service opens at most STORE_POOL_SIZE and its relay's listener; at the autoscalers' maximum
# they fit: 10 pods x 5 services x (5 + 1) = 300.
PROD_POSTGRES_CONNECTIONS = 300
# Who may scrape the metrics ports: Prometheus, in the namespace "monitoring".
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
# What the notification service sends through: SMTP (25, 465, 587) and the HTTPS providers.
PROVIDER_PORTS = (25, 465, 587, 443)
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
    "postgres": {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    },
}
# The Secrets the manifests read (created by the operator, docs/kubernetes.md).
RABBITMQ_SECRET = "ordermesh-rabbitmq"  # password, erlang-cookie
REDIS_SECRET = "ordermesh-redis"  # password
STORE_SECRET = "ordermesh-store"  # one key per service that keeps state: its runtime role's URL
# One key per service that keeps state: its database owner's URL, for the schema step only.
STORE_OWNER_SECRET = "ordermesh-store-owner"
ADMIN_SECRET = "ordermesh-admin"  # password
NOTIFICATION_SECRET = "ordermesh-notification"  # SMTP_HOST, SMTP_PORT, ... (its settings)
POSTGRES_SECRET = "ordermesh-postgres"  # password (dev's own PostgreSQL's superuser)
# One key per role of each database (`order_owner`, `order_runtime`, ...): its password, for
# dev's `postgres-roles` Job (the same passwords as in the URLs above).
POSTGRES_ROLES_SECRET = "ordermesh-postgres-roles"
# The edge policy's key pair (chassis.policy), in two Secrets: the public half for every
# follower, the private half for its signer alone (an object RBAC can keep from the others).
POLICY_VERIFY_SECRET = "ordermesh-edge-policy"  # verify-key
POLICY_SIGNING_SECRET = "ordermesh-edge-policy-signing"  # signing-key
# The secret of the internal hops (gateway.envoy's INTERNAL_HEADER), 16 characters at least.
INTERNAL_SECRET = "ordermesh-internal"  # token
# The gateway's certificate chain and key (type kubernetes.io/tls: tls.crt, tls.key), mounted
# into Envoy's container at GATEWAY_TLS_DIR, where the bootstrap names them.
GATEWAY_TLS_SECRET = "ordermesh-gateway-tls"
GATEWAY_TLS_DIR = Path("/etc/ordermesh/tls")
# Mutual TLS on the gRPC hops inside the cluster (chassis.tls), in prod: each service's pods
# mount a Secret of their own (`grpc_tls_secret`), Envoy a client certificate's; both of type
# kubernetes.io/tls with the keys cert-manager writes (tls.crt, tls.key, ca.crt).
GRPC_TLS_DIR = Path("/etc/ordermesh/grpc-tls")
GATEWAY_CLIENT_TLS_SECRET = "ordermesh-gateway-client-tls"
UPSTREAM_TLS_DIR = Path("/etc/ordermesh/upstream-tls")
HEADER = (
    "# Generated from the service catalogue by `make gen` (deploy/kubernetes.py): do not edit.\n"
)


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def _secret(name: str, key: str) -> dict[str, Any]:
    return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


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


def _tmp(*mounts: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Writable scratch directories (memory-backed) for a read-only root filesystem."""
    names = [m.strip("/").replace("/", "-") for m in mounts]
    volumes = [{"name": n, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}} for n in names]
    return volumes, [{"name": n, "mountPath": m} for n, m in zip(names, mounts, strict=True)]


def _grpc_probe(service: str, *, period_s: int, failures: int) -> dict[str, Any]:
    grpc: dict[str, Any] = {"port": GRPC_PORT}
    if service:
        grpc["service"] = service
    return {
        "grpc": grpc,
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _exec_probe(command: list[str], *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": command},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def grpc_tls_secret(service: str) -> str:
    """The Secret of `service`'s certificate (naming it: DNS SAN `<service>`), key and CA."""
    return f"ordermesh-{service}-tls"


def _tls_volume(name: str, secret: str) -> dict[str, Any]:
    # Readable by the pod's group (fsGroup, which each container's user is in), no one else.
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}}


def tls_env() -> list[dict[str, Any]]:
    """Mutual TLS for a service's container (chassis.tls): the files of its mounted Secret."""
    return [
        {"name": f"GRPC_TLS_{variable}", "value": str(GRPC_TLS_DIR / key)}
        for variable, key in (("CERT", "tls.crt"), ("KEY", "tls.key"), ("CA", "ca.crt"))
    ]


def service_probes(*, mutual_tls: bool = False) -> dict[str, dict[str, Any]]:
    """A service's probes, against its gRPC health service: readiness asks the whole server
    (its dependencies), startup and liveness `liveness` (the process; chassis.grpc.LIVENESS);
    startup allows 130 s (a service waits up to 120 s for its store and broker at start).

    Plaintext: the kubelet's own gRPC probes. With mutual TLS those cannot connect (they speak
    plaintext only): `python -m chassis.probe` runs in the container instead, presenting the
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
    probe = ["python", "-m", "chassis.probe"]
    liveness = [*probe, "--service", "liveness"]
    return {
        "startupProbe": _exec_probe(liveness, period_s=2, failures=65),
        "livenessProbe": _exec_probe(liveness, period_s=20, failures=3),
        "readinessProbe": _exec_probe(probe, period_s=10, failures=2),
    }


def rabbitmq_url(nodes: int) -> str:
    """The services' RABBITMQ_URL: the Service for one node; each node's address for a
    cluster (the connection tries them in turn, chassis.broker)."""
    if nodes == 1:
        return f"amqp://ordermesh:$(RABBITMQ_PASSWORD)@rabbitmq:{AMQP_PORT}/"
    return ",".join(
        f"amqp://ordermesh:$(RABBITMQ_PASSWORD)@rabbitmq-{n}.rabbitmq-nodes:{AMQP_PORT}/"
        for n in range(nodes)
    )


def policy_env(fields: Iterable[str]) -> list[dict[str, Any]]:
    """The edge policy's keys for a container whose settings have `fields`: the public half to
    every follower, the private half to its signer (the auth service) only."""
    env = []
    if "edge_policy_verify_key" in fields:
        env.append(
            {"name": "EDGE_POLICY_VERIFY_KEY", **_secret(POLICY_VERIFY_SECRET, "verify-key")}
        )
    if "edge_policy_signing_key" in fields:
        env.append(
            {"name": "EDGE_POLICY_SIGNING_KEY", **_secret(POLICY_SIGNING_SECRET, "signing-key")}
        )
    return env


def internal_env() -> list[dict[str, Any]]:
    """The secret of the internal hops, for the containers that send or check it: Envoy, its
    agent, the federation gateway, and each service with a GraphQL subgraph (never its
    pod's init steps)."""
    return [{"name": "INTERNAL_TOKEN", **_secret(INTERNAL_SECRET, "token")}]


def serving_env(
    service: Service, *, broker_nodes: int = 1, pool_size: int = 0, mutual_tls: bool = False
) -> list[dict[str, Any]]:
    """The environment of the container that serves `service`: its settings, the internal
    hops' secret if it has a GraphQL subgraph (which takes calls carrying it only), and its
    certificate's files with `mutual_tls` (never its pod's init steps, which call no service)."""
    env = service_env(service, broker_nodes=broker_nodes, pool_size=pool_size)
    if service.graph:
        env += internal_env()
    return [*env, *tls_env()] if mutual_tls else env


def service_env(
    service: Service, *, broker_nodes: int = 1, pool_size: int = 0
) -> list[dict[str, Any]]:
    """The environment of a service's container; secrets first: later values refer to them
    (Kubernetes expands `$(NAME)` only from variables defined before)."""
    env: list[dict[str, Any]] = [{"name": "REDIS_PASSWORD", **_secret(REDIS_SECRET, "password")}]
    if Need.BROKER in service.needs:
        env.append({"name": "RABBITMQ_PASSWORD", **_secret(RABBITMQ_SECRET, "password")})
    if Need.STORE in service.needs:
        env.append({"name": "STORE_URL", **_secret(STORE_SECRET, service.name)})
        if pool_size:
            env.append({"name": "STORE_POOL_SIZE", "value": str(pool_size)})
    env += policy_env(service.settings.model_fields)
    env += [
        {"name": "LOG_LEVEL", "value": "INFO"},
        {"name": "GRPC_HOST", "value": "0.0.0.0"},
        {"name": "GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "INSTANCE_ID", **_field("metadata.name")},
        # Registered in the registry: others (and Envoy) reach this pod at its own address.
        {"name": "ADVERTISED_HOST", **_field("status.podIP")},
        {"name": "DRAIN_DELAY_S", "value": str(DRAIN_DELAY_S)},
        {"name": "SHUTDOWN_GRACE_S", "value": str(SHUTDOWN_GRACE_S)},
        {"name": "REDIS_URL", "value": f"redis://:$(REDIS_PASSWORD)@redis:{REDIS_PORT}/0"},
    ]
    if Need.BROKER in service.needs:
        env.append({"name": "RABBITMQ_URL", "value": rabbitmq_url(broker_nodes)})
        if broker_nodes > 1:
            env.append({"name": "RABBITMQ_QUORUM_SIZE", "value": str(broker_nodes)})
    for callee in service.dependencies:
        # Used while the registry does not answer: the headless Service resolves to the pods.
        env.append({"name": service.address_variable(callee), "value": f"{callee}:{GRPC_PORT}"})
    return env


def admin_env(
    service: Service, *, broker_nodes: int = 1, pool_size: int = 0
) -> list[dict[str, Any]]:
    """The issuer's create-admin step: its service's settings, and the admin's account."""
    return [
        *service_env(service, broker_nodes=broker_nodes, pool_size=pool_size),
        {"name": "ADMIN_EMAIL", "value": "admin@ordermesh.example"},
        {"name": "ADMIN_PASSWORD", **_secret(ADMIN_SECRET, "password")},
    ]


def _app_container(
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


def _pod_template(name: str, component: str, spec: dict[str, Any], user: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": labels(name, component)}
    scraped = {"service": METRICS_PORT, "gateway": AGENT_PORT}  # the gateway's: its agent's
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


def _rolling() -> dict[str, Any]:
    """A new pod serves before an old one goes: never fewer ready replicas than wanted."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def service_deployment(service: Service) -> dict[str, Any]:
    volumes, mounts = _tmp("/tmp", "/run/ordermesh")
    container = _app_container(
        service.name,
        list(service.command),
        serving_env(service),
        mounts,
        envFrom=[{"secretRef": {"name": NOTIFICATION_SECRET}}]
        if "smtp_host" in service.settings.model_fields
        else [],
        ports=[
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        **service_probes(),
    )
    if not container["envFrom"]:
        del container["envFrom"]
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "containers": [container],
        "volumes": volumes,
    }
    init: list[dict[str, Any]] = []
    if Need.STORE in service.needs:
        # Its schema, made by its database's owner before the service runs as its runtime role
        # (whose Secret holds no owner's password).
        init.append(
            _app_container(
                "schema",
                ["python", "-m", "services.schema", service.name],
                [{"name": "STORE_URL", **_secret(STORE_OWNER_SECRET, service.name)}],
                mounts,
            )
        )
    if service.name == catalogue.ISSUER.service:
        # The admin account exists before the issuer serves (idempotent: --if-missing).
        init.append(
            _app_container(
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
            "strategy": _rolling(),
            "template": _pod_template(service.name, "service", spec, 10001),
        },
    }


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


def gateway_bootstrap(*, mutual_tls: bool = False) -> dict[str, Any]:
    """Envoy's bootstrap in the gateway pod: the contracts and this file from the ConfigMap,
    the endpoint and policy files from the agent beside it, the admin on 127.0.0.1; HTTPS and
    gRPC over TLS with the certificate and key of the Secret GATEWAY_TLS_SECRET; with
    `mutual_tls`, its calls to the services (their gRPC clusters) over mutual TLS with the
    client certificate of GATEWAY_CLIENT_TLS_SECRET, each checking that it reached the service
    it meant (chassis.tls)."""
    upstream = gateway_config.UpstreamTls(
        certificate=UPSTREAM_TLS_DIR / "tls.crt",
        key=UPSTREAM_TLS_DIR / "tls.key",
        ca=UPSTREAM_TLS_DIR / "ca.crt",
    )
    config = gateway_config.GatewayConfig(
        host="0.0.0.0",
        port=GATEWAY_PORT,
        eds_dir=Path("/gateway/eds"),
        policy_dir=Path("/gateway/policy"),
        descriptor_set=Path("/etc/envoy/descriptors.pb"),
        graphql_address=f"127.0.0.1:{GRAPHQL_PORT}",
        tls_cert=GATEWAY_TLS_DIR / "tls.crt",
        tls_key=GATEWAY_TLS_DIR / "tls.key",
        upstream_tls=upstream if mutual_tls else None,
    )
    rendered = gateway_config.bootstrap(config, routable_rpcs(DESCRIPTOR_SET.read_bytes()))
    address = {"address": "127.0.0.1", "port_value": GATEWAY_ADMIN_PORT}
    rendered["admin"] = {"address": {"socket_address": address}}
    return rendered


def gateway_files() -> list[Path]:
    """What the agent writes before Envoy may start (EDS files, policy files)."""
    config = gateway_config.GatewayConfig(
        port=GATEWAY_PORT, eds_dir=Path("/gateway/eds"), policy_dir=Path("/gateway/policy")
    )
    clusters = gateway_config.clusters_of(config) + gateway_config.graph_clusters()
    eds = [gateway_config.eds_path(config.eds_dir, c) for c in clusters]
    return [*eds, *gateway_config.policy_paths(config).values()]


def _graphql_container(mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The GraphQL federation gateway behind Envoy's /graphql (gateway/graphql), our image of
    Hive Gateway (with the packages its configuration imports) with this commit's
    configuration and supergraph; it calls the subgraphs through Envoy's subgraph listener on
    the pod's loopback. Its port is not in the pod's network policy: only Envoy beside it, and
    the kubelet's probes, reach it (and Envoy's calls only are answered: INTERNAL_TOKEN).
    CORS_ORIGINS: the web origins whose pages may call /graphql (none; a patch sets them)."""
    probe = {"httpGet": {"path": "/readiness", "port": GRAPHQL_PORT}}
    return {
        "name": "graphql",
        "image": GRAPHQL_IMAGE,
        "args": ["supergraph", "--config-path", "/gateway/gateway.config.mjs"],
        "env": [
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": str(GRAPHQL_PORT)},
            {
                "name": "SUBGRAPHS_URL",
                "value": f"http://127.0.0.1:{gateway_config.SUBGRAPHS_PORT}",
            },
            {"name": "CORS_ORIGINS", "value": ""},
            *internal_env(),
            {"name": "LOG_JSON", "value": "1"},
        ],
        "resources": RESOURCES["graphql"],
        "securityContext": container_security(10001),
        "volumeMounts": [
            *(
                {
                    "name": "graphql-config",
                    "mountPath": f"/gateway/{name}",
                    "subPath": name,
                    "readOnly": True,
                }
                for name in GRAPHQL_FILES
            ),
            *mounts,
        ],
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 60},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
    }


def gateway_deployment() -> dict[str, Any]:
    volumes, mounts = _tmp("/tmp")
    shared = {"name": "gateway-files", "mountPath": "/gateway"}
    files = [str(path) for path in gateway_files()]
    agent = _app_container(
        "agent",
        ["python", "-m", "gateway.agent"],
        [
            {"name": "REDIS_PASSWORD", **_secret(REDIS_SECRET, "password")},
            {"name": "REDIS_URL", "value": f"redis://:$(REDIS_PASSWORD)@redis:{REDIS_PORT}/0"},
            {"name": "EDS_DIR", "value": "/gateway/eds"},
            {"name": "POLICY_DIR", "value": "/gateway/policy"},
            *policy_env(AgentSettings.model_fields),
            *internal_env(),
            # On the pod's address, for the kubelet's probe and Prometheus (the gateway's
            # NetworkPolicy lets only Prometheus in on it).
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": str(AGENT_PORT)},
        ],
        [*mounts, shared],
        ports=[{"name": "agent", "containerPort": AGENT_PORT}],
        # A sidecar (started before Envoy, running beside it): Envoy starts once the agent
        # wrote every file Envoy reads at start; the pod is Ready only while the agent is too,
        # i.e. holds a verified edge policy and endpoints of every routed service (a sidecar's
        # readiness counts towards its pod's).
        restartPolicy="Always",
        readinessProbe={
            "httpGet": {"path": "/ready", "port": AGENT_PORT},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        startupProbe=_exec_probe(
            [
                "python",
                "-c",
                "import os, sys; sys.exit(not all(map(os.path.exists, sys.argv[1:])))",
                *files,
            ],
            period_s=1,
            failures=60,
        ),
    )
    envoy = {
        "name": "envoy",
        "image": ENVOY_IMAGE,
        "command": [
            "envoy",
            "-c",
            "/etc/envoy/envoy.json",
            "--log-level",
            "warn",
            "--drain-time-s",
            str(DRAIN_DELAY_S),
        ],
        # Envoy adds it to the calls of /graphql and of the subgraph listener's routes.
        "env": internal_env(),
        "ports": [{"name": "https", "containerPort": GATEWAY_PORT}],
        "resources": RESOURCES["envoy"],
        "securityContext": container_security(101),
        "volumeMounts": [
            {"name": "envoy-config", "mountPath": "/etc/envoy", "readOnly": True},
            {"name": "gateway-tls", "mountPath": str(GATEWAY_TLS_DIR), "readOnly": True},
            {**shared, "readOnly": True},
            *mounts,
        ],
        # TCP probes: the listener speaks TLS (a plain HTTP probe would fail the handshake),
        # and what makes the pod Ready is the agent's (below).
        "startupProbe": {
            "tcpSocket": {"port": GATEWAY_PORT},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "tcpSocket": {"port": GATEWAY_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "tcpSocket": {"port": GATEWAY_PORT},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # Out of the Service's endpoints first, then Envoy drains its connections.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_DELAY_S}}},
    }
    spec = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "initContainers": [agent],
        "containers": [envoy, _graphql_container(mounts)],
        "volumes": [
            *volumes,
            {"name": "gateway-files", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "envoy-config", "configMap": {"name": "gateway-envoy"}},
            {"name": "graphql-config", "configMap": {"name": "gateway-graphql"}},
            _tls_volume("gateway-tls", GATEWAY_TLS_SECRET),  # Envoy's user 101 is in fsGroup
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway", "labels": labels("gateway", "gateway")},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": selector("gateway"),
            "strategy": _rolling(),
            # The agent runs as the image's user, Envoy as envoy's (101): each sets its own.
            "template": _pod_template("gateway", "gateway", spec, 10001),
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


def redis() -> list[dict[str, Any]]:
    volumes, mounts = _tmp("/tmp", "/data")
    container = {
        "name": "redis",
        "image": REDIS_IMAGE,
        # The password reaches Redis in a file only its user reads, never on a command line.
        "command": [
            "sh",
            "-c",
            'umask 077 && printf "requirepass %s\\n" "$REDIS_PASSWORD" > /tmp/redis.conf '
            f'&& exec redis-server /tmp/redis.conf --port {REDIS_PORT} --save "" --appendonly no',
        ],
        "env": [{"name": "REDIS_PASSWORD", **_secret(REDIS_SECRET, "password")}],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "resources": RESOURCES["redis"],
        "securityContext": container_security(999),
        "volumeMounts": mounts,
        "livenessProbe": _exec_probe(
            ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping'], period_s=10, failures=3
        ),
        "readinessProbe": _exec_probe(
            ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG'],
            period_s=5,
            failures=2,
        ),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "redis", "labels": labels("redis", "registry")},
        "spec": {
            "replicas": 1,
            "selector": selector("redis"),
            # The registry is soft state (instances register again within a heartbeat): one
            # Redis, replaced in place; the services answer without it (docs/kubernetes.md).
            "strategy": {"type": "Recreate"},
            "template": _pod_template(
                "redis", "registry", {"containers": [container], "volumes": volumes}, 999
            ),
        },
    }
    service = cluster_service("redis", "registry", "redis", REDIS_PORT)
    return [deployment, service]


def rabbitmq_conf(nodes: int) -> str:
    lines = [
        f"listeners.tcp.default = {AMQP_PORT}",
        "loopback_users = none",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(
            f"cluster_formation.classic_config.nodes.{n + 1} = rabbit@rabbitmq-{n}.rabbitmq-nodes."
            f"{NAMESPACE}.svc.cluster.local"
            for n in range(nodes)
        ),
        # The minority side of a partition stops (and its clients move to the majority).
        "cluster_partition_handling = pause_minority",
        "vm_memory_high_watermark.relative = 0.4",
        "disk_free_limit.absolute = 2GB",
    ]
    return "\n".join(lines) + "\n"


def rabbitmq(nodes: int, storage: str) -> list[dict[str, Any]]:
    volumes, mounts = _tmp("/tmp", "/var/log/rabbitmq")
    data = {"name": "data", "mountPath": "/var/lib/rabbitmq"}
    config = {"name": "config", "mountPath": "/etc/rabbitmq", "readOnly": True}
    cookie = {"name": "cookie", "mountPath": "/cookie", "readOnly": True}
    env = [
        {"name": "POD_NAME", **_field("metadata.name")},
        {"name": "RABBITMQ_DEFAULT_USER", "value": "ordermesh"},
        {"name": "RABBITMQ_DEFAULT_PASS", **_secret(RABBITMQ_SECRET, "password")},
        {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
        {
            "name": "RABBITMQ_NODENAME",
            "value": f"rabbit@$(POD_NAME).rabbitmq-nodes.{NAMESPACE}.svc.cluster.local",
        },
        {"name": "RABBITMQ_CONFIG_FILE", "value": "/etc/rabbitmq/rabbitmq.conf"},
        {"name": "RABBITMQ_ENABLED_PLUGINS_FILE", "value": "/etc/rabbitmq/enabled_plugins"},
    ]
    # The Erlang cookie must be the node user's own file, readable by it alone: a Secret's
    # files are not, so it is copied into place first.
    copy_cookie = {
        "name": "cookie",
        "image": RABBITMQ_IMAGE,
        "command": [
            "sh",
            "-c",
            "cp /cookie/erlang-cookie /var/lib/rabbitmq/.erlang.cookie "
            "&& chmod 400 /var/lib/rabbitmq/.erlang.cookie",
        ],
        "resources": RESOURCES["redis"],
        "securityContext": container_security(999),
        "volumeMounts": [data, cookie],
    }
    node = {
        "name": "rabbitmq",
        "image": RABBITMQ_IMAGE,
        "env": env,
        "ports": [
            {"name": "amqp", "containerPort": AMQP_PORT},
            {"name": "epmd", "containerPort": EPMD_PORT},
            {"name": "dist", "containerPort": DIST_PORT},
            {"name": "metrics", "containerPort": RABBITMQ_METRICS_PORT},
        ],
        "resources": RESOURCES["rabbitmq"],
        "securityContext": container_security(999),
        "volumeMounts": [data, config, *mounts],
        "startupProbe": _exec_probe(
            ["rabbitmq-diagnostics", "-q", "ping"], period_s=5, failures=60
        ),
        "livenessProbe": _exec_probe(
            ["rabbitmq-diagnostics", "-q", "ping"], period_s=30, failures=3
        ),
        "readinessProbe": _exec_probe(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], period_s=10, failures=3
        ),
        # A node leaves only when no quorum queue would lose its majority with it.
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": [
                        "sh",
                        "-c",
                        "rabbitmq-upgrade await_online_quorum_plus_one -t 300; "
                        "rabbitmq-upgrade drain -t 60",
                    ]
                }
            }
        },
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "rabbitmq", "labels": labels("rabbitmq", "broker")},
        "spec": {
            "replicas": nodes,
            "serviceName": "rabbitmq-nodes",
            # The nodes find each other at their first start: they start together.
            "podManagementPolicy": "Parallel",
            "selector": selector("rabbitmq"),
            "updateStrategy": {"type": "RollingUpdate"},
            "template": _pod_template(
                "rabbitmq",
                "broker",
                {
                    "terminationGracePeriodSeconds": 600,
                    "initContainers": [copy_cookie],
                    "containers": [node],
                    "volumes": [
                        *volumes,
                        {"name": "config", "configMap": {"name": "rabbitmq-config"}},
                        {
                            "name": "cookie",
                            "secret": {"secretName": RABBITMQ_SECRET, "defaultMode": 0o440},
                        },
                    ],
                },
                999,
            ),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }
    return [
        statefulset,
        headless_service(
            "rabbitmq-nodes",
            "broker",
            [("amqp", AMQP_PORT), ("epmd", EPMD_PORT), ("dist", DIST_PORT)],
            pods="rabbitmq",
            publishNotReadyAddresses=True,
        ),
        cluster_service("rabbitmq", "broker", "amqp", AMQP_PORT),
    ]


def postgres() -> list[dict[str, Any]]:
    volumes, mounts = _tmp("/tmp", "/var/run/postgresql")
    container = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "env": [
            {"name": "POSTGRES_USER", "value": "ordermesh"},
            {"name": "POSTGRES_PASSWORD", **_secret(POSTGRES_SECRET, "password")},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "resources": RESOURCES["postgres"],
        "securityContext": container_security(999),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}, *mounts],
        "livenessProbe": _exec_probe(["pg_isready", "-U", "ordermesh"], period_s=10, failures=3),
        "readinessProbe": _exec_probe(["pg_isready", "-U", "ordermesh"], period_s=5, failures=2),
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "postgres", "labels": labels("postgres", "database")},
        "spec": {
            "replicas": 1,
            "serviceName": "postgres",
            "selector": selector("postgres"),
            "template": _pod_template(
                "postgres",
                "database",
                {"containers": [container], "volumes": volumes},
                999,
            ),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    service = cluster_service("postgres", "database", "postgres", POSTGRES_PORT)
    return [statefulset, service, postgres_roles()]


def postgres_roles() -> dict[str, Any]:
    """The Job that makes each service's database and roles, or brings them up to date, as the
    superuser (deploy/databases.py's script, idempotent): the only pod besides the server given
    the superuser's password. Deleted a while after it ends, so that the next `kubectl apply`
    runs it again (a new service's database, changed passwords)."""
    roles = [role for name in stores() for role in databases.roles(name)]
    volumes, mounts = _tmp("/tmp")
    container = {
        "name": "roles",
        "image": POSTGRES_IMAGE,
        "command": ["sh", "-c", ROLES_COMMAND],
        "env": [
            {"name": "PGHOST", "value": "postgres"},
            {"name": "PGPORT", "value": str(POSTGRES_PORT)},
            {"name": "PGUSER", "value": "ordermesh"},
            {"name": "PGDATABASE", "value": "postgres"},
            {"name": "PGPASSWORD", **_secret(POSTGRES_SECRET, "password")},
            *(
                {"name": databases.password_variable(role), **_secret(POSTGRES_ROLES_SECRET, role)}
                for role in roles
            ),
        ],
        "resources": SERVICE_RESOURCES,
        "securityContext": container_security(999),
        "volumeMounts": [{"name": "init", "mountPath": "/ordermesh", "readOnly": True}, *mounts],
    }
    pod = _pod_template(
        "postgres-roles",
        "database",
        {
            "restartPolicy": "OnFailure",
            "containers": [container],
            "volumes": [{"name": "init", "configMap": {"name": "postgres-init"}}, *volumes],
        },
        999,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "postgres-roles", "labels": labels("postgres-roles", "database")},
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 600, "template": pod},
    }


# NetworkPolicies: deny all, then exactly what the catalogue says.


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


def callers_of(callee: str) -> list[str]:
    """Who calls `callee` over gRPC: the services that depend on it, and the gateway for the
    services it routes to and its own (auth, ratelimit)."""
    callers = [s.name for s in catalogue.CATALOGUE if callee in s.dependencies]
    return ["gateway", *callers]


def network_policies() -> list[dict[str, Any]]:
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
    broker_users = [s.name for s in catalogue.CATALOGUE if Need.BROKER in s.needs]
    for service in catalogue.CATALOGUE:
        egress = [
            {"to": [_pods(callee)], "ports": _ports(GRPC_PORT)} for callee in service.dependencies
        ]
        egress.append({"to": [_pods("redis")], "ports": _ports(REDIS_PORT)})
        if Need.BROKER in service.needs:
            egress.append({"to": [_pods("rabbitmq")], "ports": _ports(AMQP_PORT)})
        if "smtp_host" in service.settings.model_fields:
            egress.append({"ports": _ports(*PROVIDER_PORTS)})  # mail and providers, anywhere
        ingress = [
            {
                "from": [_pods(caller) for caller in callers_of(service.name)],
                "ports": _ports(GRPC_PORT),
            },
            {"from": [PROMETHEUS_PEER], "ports": _ports(METRICS_PORT)},
        ]
        if service.graph:  # the gateway calls its GraphQL subgraph on its HTTP server
            ingress.append({"from": [_pods("gateway")], "ports": _ports(METRICS_PORT)})
        policies.append(_policy(service.name, service.name, ingress=ingress, egress=egress))
    routed = [s.name for s in catalogue.CATALOGUE]
    policies += [
        _policy(
            "gateway",
            "gateway",
            ingress=[
                {"ports": _ports(GATEWAY_PORT)},
                {"from": [PROMETHEUS_PEER], "ports": _ports(AGENT_PORT)},
            ],
            egress=[
                *({"to": [_pods(name)], "ports": _ports(GRPC_PORT)} for name in routed),
                *(
                    {"to": [_pods(s.name)], "ports": _ports(METRICS_PORT)}
                    for s in catalogue.graph_services()
                ),
                {"to": [_pods("redis")], "ports": _ports(REDIS_PORT)},
            ],
        ),
        _policy(
            "redis",
            "redis",
            ingress=[
                {
                    "from": [_pods(name) for name in ["gateway", *routed]],
                    "ports": _ports(REDIS_PORT),
                }
            ],
        ),
        _policy(
            "rabbitmq",
            "rabbitmq",
            ingress=[
                {"from": [_pods(name) for name in broker_users], "ports": _ports(AMQP_PORT)},
                {"from": [_pods("rabbitmq")], "ports": _ports(EPMD_PORT, DIST_PORT)},
                {"from": [PROMETHEUS_PEER], "ports": _ports(RABBITMQ_METRICS_PORT)},
            ],
            egress=[{"to": [_pods("rabbitmq")], "ports": _ports(EPMD_PORT, DIST_PORT)}],
        ),
    ]
    return policies


def store_policies(*, in_cluster: bool) -> list[dict[str, Any]]:
    """Who reaches the database: the services that keep state; in the cluster (dev's own
    PostgreSQL), or outside it (prod: on the database's port, wherever it is; narrow it to the
    database's address range with an ipBlock, docs/kubernetes.md)."""
    to = [{"to": [_pods("postgres")]}] if in_cluster else [{}]
    policies = [
        _policy(f"{name}-store", name, egress=[{**t, "ports": _ports(POSTGRES_PORT)} for t in to])
        for name in stores()
    ]
    if in_cluster:
        clients = [*stores(), "postgres-roles"]
        policies += [
            _policy(
                "postgres-roles",
                "postgres-roles",
                egress=[{"to": [_pods("postgres")], "ports": _ports(POSTGRES_PORT)}],
            ),
            _policy(
                "postgres",
                "postgres",
                ingress=[
                    {"from": [_pods(name) for name in clients], "ports": _ports(POSTGRES_PORT)}
                ],
            ),
        ]
    return policies


def namespace() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def workloads() -> list[str]:
    """The Deployments prod runs with several replicas: every service, and the gateway."""
    return [s.name for s in catalogue.in_start_order()] + ["gateway"]


def prod_patches() -> list[dict[str, Any]]:
    patches: list[dict[str, Any]] = []
    for name in workloads():
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
    patches += [service_patch(service) for service in catalogue.in_start_order()]
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


def service_patch(service: Service) -> dict[str, Any]:
    """A service in prod: its settings for the broker cluster and the database's connections,
    and mutual TLS from its own Secret (its serving container only), probed in the container."""
    # The env lists and the probes replaced whole: a merge would put the changed entries
    # first, before the secrets they refer to, and leave the gRPC probe beside the exec one.
    replace: dict[str, Any] = {"$patch": "replace"}
    pool_size = catalogue.pool_size_within(PROD_POSTGRES_CONNECTIONS, PROD_MAX_REPLICAS)
    settings = {"broker_nodes": RABBITMQ_PROD_NODES, "pool_size": pool_size}
    probes = service_probes(mutual_tls=True)
    container: dict[str, Any] = {
        "name": service.name,
        "env": [replace, *serving_env(service, **settings, mutual_tls=True)],
        "volumeMounts": [{"name": "grpc-tls", "mountPath": str(GRPC_TLS_DIR), "readOnly": True}],
        **{name: {**replace, **probe} for name, probe in probes.items()},
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [_tls_volume("grpc-tls", grpc_tls_secret(service.name))],
    }
    if service.name == catalogue.ISSUER.service:
        admin = [replace, *admin_env(service, **settings)]
        # The schema step named first, or the merge would put create-admin before it.
        spec["initContainers"] = [{"name": "schema"}, {"name": "create-admin", "env": admin}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name},
        "spec": {"template": {"spec": spec}},
    }


def gateway_patch() -> dict[str, Any]:
    """The gateway in prod: Envoy's client certificate for its calls to the services over
    mutual TLS (the prod bootstrap, `gateway_bootstrap(mutual_tls=True)`, names its files)."""
    mount = {"name": "gateway-client-tls", "mountPath": str(UPSTREAM_TLS_DIR), "readOnly": True}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "envoy", "volumeMounts": [mount]}],
                    "volumes": [_tls_volume("gateway-client-tls", GATEWAY_CLIENT_TLS_SECRET)],
                }
            }
        },
    }


def budgets() -> list[dict[str, Any]]:
    found = []
    for name in [*workloads(), "rabbitmq"]:
        found.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": PART_OF}},
                "spec": {"maxUnavailable": 1, "selector": selector(name)},
            }
        )
    return found


def autoscalers() -> list[dict[str, Any]]:
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
        for name in workloads()
    ]


def dump_all(documents: list[dict[str, Any]]) -> str:
    return HEADER + str(yaml.safe_dump_all(documents, sort_keys=False, width=100))


def kustomization(**fields: Any) -> str:
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}
    return HEADER + str(yaml.safe_dump(document, sort_keys=False, width=100))


def write(root: Path) -> None:
    out = root / "deploy" / "kubernetes"
    shutil.rmtree(out, ignore_errors=True)
    base, dev, prod = out / "base", out / "overlays" / "dev", out / "overlays" / "prod"
    for directory in (base, dev, prod):
        directory.mkdir(parents=True)
    services = []
    for service in catalogue.in_start_order():
        services += [
            service_deployment(service),
            headless_service(
                service.name, "service", [("grpc", GRPC_PORT), ("metrics", METRICS_PORT)]
            ),
        ]
    (base / "namespace.yaml").write_text(dump_all([namespace()]))
    (base / "services.yaml").write_text(dump_all(services))
    (base / "gateway.yaml").write_text(
        dump_all(
            [gateway_deployment(), cluster_service("gateway", "gateway", "https", GATEWAY_PORT)]
        )
    )
    (base / "envoy.json").write_text(json.dumps(gateway_bootstrap(), indent=1) + "\n")
    for name in GRAPHQL_FILES:
        shutil.copyfile(ROOT / "gateway" / "graphql" / name, base / name)
    shutil.copyfile(DESCRIPTOR_SET, base / "descriptors.pb")
    (base / "redis.yaml").write_text(dump_all(redis()))
    (base / "rabbitmq.yaml").write_text(dump_all(rabbitmq(1, "1Gi")))
    (base / "network-policies.yaml").write_text(dump_all(network_policies()))
    (base / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
            resources=[
                "namespace.yaml",
                "services.yaml",
                "gateway.yaml",
                "redis.yaml",
                "rabbitmq.yaml",
                "network-policies.yaml",
            ],
            configMapGenerator=[
                {"name": "gateway-envoy", "files": ["envoy.json", "descriptors.pb"]},
                {"name": "gateway-graphql", "files": list(GRAPHQL_FILES)},
                {"name": "rabbitmq-config", "files": ["rabbitmq.conf", "enabled_plugins"]},
            ],
        )
    )
    (base / "rabbitmq.conf").write_text(rabbitmq_conf(1))
    (base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")

    (dev / "postgres.yaml").write_text(dump_all([*postgres(), *store_policies(in_cluster=True)]))
    (dev / "init.sql").write_text(init_sql())
    (dev / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
            resources=["../../base", "postgres.yaml"],
            configMapGenerator=[{"name": "postgres-init", "files": ["init.sql"]}],
            images=[
                {"name": IMAGE, "newName": "localhost/ordermesh", "newTag": "latest"},
                {
                    "name": GRAPHQL_IMAGE,
                    "newName": "localhost/ordermesh-graphql",
                    "newTag": "latest",
                },
            ],
        )
    )

    (prod / "patches.yaml").write_text(dump_all(prod_patches()))
    (prod / "envoy.json").write_text(
        json.dumps(gateway_bootstrap(mutual_tls=True), indent=1) + "\n"
    )
    (prod / "rabbitmq.conf").write_text(rabbitmq_conf(RABBITMQ_PROD_NODES))
    (prod / "availability.yaml").write_text(dump_all([*budgets(), *autoscalers()]))
    (prod / "store.yaml").write_text(dump_all(store_policies(in_cluster=False)))
    (prod / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
            resources=["../../base", "availability.yaml", "store.yaml"],
            patches=[{"path": "patches.yaml"}],
            # The bootstrap with mutual TLS to the services, in place of base's (same ConfigMap,
            # its descriptors kept; a new name, so a change rolls the gateway out).
            configMapGenerator=[
                {"name": "rabbitmq-config", "behavior": "merge", "files": ["rabbitmq.conf"]},
                {"name": "gateway-envoy", "behavior": "merge", "files": ["envoy.json"]},
            ],
            images=[
                {"name": IMAGE, "newName": "ordermesh", "newTag": _version()},
                {"name": GRAPHQL_IMAGE, "newName": "ordermesh-graphql", "newTag": _version()},
            ],
        )
    )


def _version() -> str:
    return str(catalogue.CATALOGUE[0].settings.model_fields["service_version"].default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    write(parser.parse_args().root)


if __name__ == "__main__":
    main()
