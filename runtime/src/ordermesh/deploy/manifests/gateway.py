"""The gateway's pod: Envoy (its bootstrap and the contracts in a ConfigMap, serving HTTPS and
gRPC over TLS with the certificate of the Secret GATEWAY_TLS_SECRET), its agent as a sidecar
whose readiness (a verified edge policy and endpoints) is the pod's, and the GraphQL
federation gateway of the project's `Federation`, if it has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ordermesh.deploy import facts
from ordermesh.deploy.environment import agent_environment
from ordermesh.deploy.manifests.environment import (
    KubernetesTarget,
    entries,
    internal_env,
    passwords,
)
from ordermesh.deploy.manifests.pods import (
    GRAPHQL_IMAGE,
    RESOURCES,
    app_container,
    container_security,
    exec_probe,
    labels,
    pod_template,
    rolling,
    scratch,
    selector,
    tls_volume,
)
from ordermesh.deploy.manifests.secrets import GATEWAY_TLS_SECRET
from ordermesh.deploy.project import Federation, Project
from ordermesh.gateway import envoy as gateway_config
from ordermesh.gateway.contracts import routable_rpcs

__all__ = [
    "GATEWAY_TLS_DIR",
    "GRAPHQL_CONFIGMAP",
    "UPSTREAM_TLS_DIR",
    "gateway_bootstrap",
    "gateway_deployment",
    "gateway_files",
]

# The ConfigMap of the federation gateway's files (the kustomization's, from its Federation).
GRAPHQL_CONFIGMAP = "gateway-graphql"


GATEWAY_TLS_DIR = Path("/etc/ordermesh/tls")


UPSTREAM_TLS_DIR = Path("/etc/ordermesh/upstream-tls")


def gateway_bootstrap(project: Project, *, mutual_tls: bool = False) -> dict[str, Any]:
    """Envoy's bootstrap in the gateway pod: the contracts and this file from the ConfigMap,
    the endpoint and policy files from the agent beside it, the admin on 127.0.0.1; HTTPS and
    gRPC over TLS with the certificate and key of the Secret GATEWAY_TLS_SECRET; with
    `mutual_tls`, its calls to the services (their gRPC clusters) over mutual TLS with the
    client certificate of GATEWAY_CLIENT_TLS_SECRET, each checking that it reached the service
    it meant (ordermesh.tls)."""
    upstream = gateway_config.UpstreamTls(
        certificate=UPSTREAM_TLS_DIR / "tls.crt",
        key=UPSTREAM_TLS_DIR / "tls.key",
        ca=UPSTREAM_TLS_DIR / "ca.crt",
    )
    config = gateway_config.GatewayConfig(
        host="0.0.0.0",
        port=facts.GATEWAY_PORT,
        eds_dir=Path("/gateway/eds"),
        catalogue=project.catalogue,
        policy_dir=Path("/gateway/policy"),
        descriptor_set=Path("/etc/envoy/descriptors.pb"),
        graphql_address=f"127.0.0.1:{facts.GRAPHQL_PORT}" if project.federation else "",
        tls_cert=GATEWAY_TLS_DIR / "tls.crt",
        tls_key=GATEWAY_TLS_DIR / "tls.key",
        upstream_tls=upstream if mutual_tls else None,
    )
    rendered = gateway_config.bootstrap(
        config, routable_rpcs(project.descriptor_set.read_bytes(), project.catalogue)
    )
    address = {"address": "127.0.0.1", "port_value": facts.GATEWAY_ADMIN_PORT}
    rendered["admin"] = {"address": {"socket_address": address}}
    return rendered


def gateway_files(project: Project) -> list[Path]:
    """What the agent writes before Envoy may start (EDS files, policy files)."""
    config = gateway_config.GatewayConfig(
        port=facts.GATEWAY_PORT,
        eds_dir=Path("/gateway/eds"),
        catalogue=project.catalogue,
        descriptor_set=project.descriptor_set,
        policy_dir=Path("/gateway/policy"),
    )
    clusters = gateway_config.clusters_of(config)
    clusters += gateway_config.graph_clusters(project.catalogue)
    eds = [gateway_config.eds_path(config.eds_dir, c) for c in clusters]
    return [*eds, *gateway_config.policy_paths(config).values()]


def _graphql_container(federation: Federation, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The GraphQL federation gateway behind Envoy's /graphql (the project's `Federation`), its
    image of Hive Gateway with the configuration and supergraph of its directory; it calls the
    subgraphs through Envoy's subgraph listener on the pod's loopback. Its port is not in the pod's
    network policy: only Envoy beside it, and the kubelet's probes, reach it (and Envoy's calls
    only are answered: INTERNAL_TOKEN). CORS_ORIGINS: the web origins whose pages may call /graphql
    (none; a patch sets them)."""
    probe = {"httpGet": {"path": "/readiness", "port": facts.GRAPHQL_PORT}}
    return {
        "name": "graphql",
        "image": GRAPHQL_IMAGE,
        "args": ["supergraph", "--config-path", f"/gateway/{federation.config}"],
        "env": [
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": str(facts.GRAPHQL_PORT)},
            {
                "name": "SUBGRAPHS_URL",
                "value": f"http://127.0.0.1:{facts.SUBGRAPHS_PORT}",
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
                for name in federation.files
            ),
            *mounts,
        ],
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 60},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
    }


def gateway_deployment(project: Project) -> dict[str, Any]:
    volumes, mounts = scratch("/tmp")
    shared = {"name": "gateway-files", "mountPath": "/gateway"}
    files = [str(path) for path in gateway_files(project)]
    settings = agent_environment(
        KubernetesTarget(),
        eds_dir={"value": "/gateway/eds"},
        policy_dir={"value": "/gateway/policy"},
        catalogue_at=project.catalogue_at,
    )
    agent = app_container(
        "agent",
        ["python", "-m", "ordermesh.gateway.agent"],
        [
            *passwords(settings),
            *entries(settings),
            # On the pod's address, for the kubelet's probe and Prometheus (the gateway's
            # NetworkPolicy lets only Prometheus in on it).
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": str(facts.AGENT_PORT)},
        ],
        [*mounts, shared],
        ports=[{"name": "agent", "containerPort": facts.AGENT_PORT}],
        # A sidecar (started before Envoy, running beside it): Envoy starts once the agent
        # wrote every file Envoy reads at start; the pod is Ready only while the agent is too,
        # i.e. holds a verified edge policy and endpoints of every routed service (a sidecar's
        # readiness counts towards its pod's).
        restartPolicy="Always",
        readinessProbe={
            "httpGet": {"path": "/ready", "port": facts.AGENT_PORT},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        startupProbe=exec_probe(
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
        "image": facts.ENVOY_IMAGE,
        "command": [
            "envoy",
            "-c",
            "/etc/envoy/envoy.json",
            "--log-level",
            "warn",
            "--drain-time-s",
            str(facts.DRAIN_DELAY_S),
        ],
        # Envoy adds it to the calls of /graphql and of the subgraph listener's routes.
        "env": internal_env(),
        "ports": [{"name": "https", "containerPort": facts.GATEWAY_PORT}],
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
            "tcpSocket": {"port": facts.GATEWAY_PORT},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "tcpSocket": {"port": facts.GATEWAY_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "tcpSocket": {"port": facts.GATEWAY_PORT},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # Out of the Service's endpoints first, then Envoy drains its connections.
        "lifecycle": {"preStop": {"sleep": {"seconds": facts.DRAIN_DELAY_S}}},
    }
    containers = [envoy]
    volumes += [
        {"name": "gateway-files", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "envoy-config", "configMap": {"name": "gateway-envoy"}},
    ]
    if project.federation is not None:
        containers.append(_graphql_container(project.federation, mounts))
        volumes.append({"name": "graphql-config", "configMap": {"name": GRAPHQL_CONFIGMAP}})
    spec = {
        "terminationGracePeriodSeconds": facts.TERMINATION_GRACE_S,
        "initContainers": [agent],
        "containers": containers,
        # Envoy's user 101 is in fsGroup.
        "volumes": [*volumes, tls_volume("gateway-tls", GATEWAY_TLS_SECRET)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway", "labels": labels("gateway", "gateway")},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": selector("gateway"),
            "strategy": rolling(),
            # The agent runs as the image's user, Envoy as envoy's (101): each sets its own.
            "template": pod_template("gateway", "gateway", spec, 10001),
        },
    }
