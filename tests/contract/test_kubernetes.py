"""The Kubernetes manifests keep their conventions on every object, as `kubectl kustomize`
renders each overlay (`make lint` validates the same renderings against Kubernetes' schemas).

No cluster runs here: these are the promises the manifests make on paper — probes, a restricted
security context, requests and limits, graceful termination longer than the drain, rolling
updates with no unavailable replica, secrets only by reference (the edge policy's signing key
in a Secret only the auth service reads), a gateway pod that is not Ready before its agent holds
a verified edge policy and endpoints, NetworkPolicies that allow exactly the traffic the
service catalogue says exists, and each service on its database as its own runtime role (the
schema made first by its owner; no superuser's or owner's password in a service's container);
the internal hops' secret in exactly Envoy, its agent, the federation gateway and the services
with a GraphQL subgraph; Envoy serving TLS from the mounted Secret its bootstrap names; the
federation gateway on our image; in prod, mutual TLS on every gRPC hop inside the cluster
(each service from a Secret of its own, probed in its container; Envoy with a client
certificate, checking each service's name), and none of it in dev.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from ordermesh.catalogue import Need
from ordermesh.config import ConfigError, ServiceSettings, load
from ordermesh.deploy import databases, facts
from ordermesh.deploy.manifests.gateway import GATEWAY_TLS_DIR, gateway_bootstrap, gateway_files
from ordermesh.deploy.manifests.overlays import PROD_POSTGRES_CONNECTIONS, RABBITMQ_PROD_NODES
from ordermesh.deploy.manifests.policies import PROMETHEUS_PEER
from ordermesh.deploy.manifests.secrets import (
    GATEWAY_CLIENT_TLS_SECRET,
    GATEWAY_TLS_SECRET,
    INTERNAL_SECRET,
    POLICY_SIGNING_SECRET,
    POLICY_VERIFY_SECRET,
    POSTGRES_ROLES_SECRET,
    POSTGRES_SECRET,
    RABBITMQ_SECRET,
    STORE_OWNER_SECRET,
    STORE_SECRET,
    grpc_tls_secret,
)
from ordermesh.gateway.agent import AgentSettings

from deploy.project import PROJECT
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = ("dev", "prod")
WORKLOADS = ("Deployment", "StatefulSet")
PODS = (*WORKLOADS, "Job")  # what runs containers
SECRET_NAMES = re.compile(r"PASSWORD|PASS$|TOKEN|SECRET|COOKIE|_KEY$|^STORE_URL$")
# Mutual TLS between the services and from Envoy to them: on in prod, plaintext in dev.
MUTUAL_TLS = {"dev": False, "prod": True}
TLS_VARIABLES = {"GRPC_TLS_CERT": "tls.crt", "GRPC_TLS_KEY": "tls.key", "GRPC_TLS_CA": "ca.crt"}


@cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(ROOT / "deploy" / "kubernetes" / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(overlay: str, *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] in kinds]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    return next(d for d in of_kind(overlay, kind) if d["metadata"]["name"] == name)


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_volumes(workload: dict[str, Any]) -> dict[str, str]:
    """A pod's Secret volumes: volume name -> Secret name."""
    volumes = workload["spec"]["template"]["spec"].get("volumes", [])
    return {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}


def with_settings(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A service pod's containers that run with the service's settings: all but the schema
    step, which has its owner's URL only."""
    return (c for c in containers(workload) if c["name"] != "schema")


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


def test_every_object_is_in_the_namespace_and_the_namespace_is_restricted(overlay):
    for doc in rendered(overlay):
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"].get("namespace") == PROJECT.name, doc["metadata"]


def test_every_container_is_unprivileged_with_requests_and_limits(overlay):
    for workload in of_kind(overlay, *PODS):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["runAsNonRoot"] is True, where
            assert security["runAsUser"] > 0, where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, where


def test_every_long_running_container_has_probes(overlay):
    for workload in of_kind(overlay, *WORKLOADS):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


@pytest.mark.parametrize("service", catalogue.CATALOGUE, ids=lambda s: s.name)
def test_every_service_is_probed_over_grpc_health_and_drains_within_its_grace(overlay, service):
    deployment = named(overlay, "Deployment", service.name)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == list(service.command)
    # Against the health service: readiness follows the dependencies, liveness and startup only
    # the process (ordermesh.grpc.LIVENESS). Plaintext: Kubernetes' own gRPC probe; with mutual
    # TLS, which it cannot speak, our probe in the container (with the pod's certificate).
    probes = {"readinessProbe": "", "livenessProbe": "liveness", "startupProbe": "liveness"}
    for probe, health in probes.items():
        if MUTUAL_TLS[overlay]:
            assert "grpc" not in container[probe], probe
            asked = ["--service", health] if health else []
            assert container[probe]["exec"]["command"] == [
                "python", "-m", "ordermesh.probe", *asked]  # fmt: skip
            assert container[probe]["timeoutSeconds"] >= 2, probe  # a Python start, a handshake
        else:
            assert "exec" not in container[probe], probe
            asked = {"service": health} if health else {}
            assert container[probe]["grpc"] == {"port": facts.GRPC_PORT, **asked}
    env = env_of(container)
    drain = float(env["SHUTDOWN_GRACE_S"]["value"]) + float(env["DRAIN_DELAY_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert env["ADVERTISED_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for callee in catalogue.CATALOGUE.dependencies(service):
        assert env[service.address_variable(callee)]["value"] == f"{callee}:{facts.GRPC_PORT}"
        named(overlay, "Service", callee)  # the fallback address resolves


def test_secrets_are_referenced_never_written(overlay):
    assert not of_kind(overlay, "Secret")
    for workload in of_kind(overlay, *PODS):
        volumes = secret_volumes(workload)
        for container in containers(workload):
            # A secret's file (GRPC_TLS_KEY) is named by its path in a mounted Secret.
            mounted = tuple(f"{m['mountPath']}/" for m in container.get("volumeMounts", [])
                            if m["name"] in volumes)  # fmt: skip
            defined: set[str] = set()
            for name, entry in env_of(container).items():
                where = f"{workload['metadata']['name']}/{container['name']}: {name}"
                if SECRET_NAMES.search(name) and not entry.get("value", "").startswith(mounted):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), where
                value = entry.get("value", "")
                for password in re.findall(r"://[^:/@,]*:([^@,]*)@", value):
                    assert re.fullmatch(r"\$\(\w+\)", password), f"{where} has a password"
                # $(NAME) expands only from a variable defined before it.
                assert set(re.findall(r"\$\((\w+)\)", value)) <= defined, where
                defined.add(name)


def test_the_gateway_runs_envoy_with_the_generated_bootstrap_and_its_agent(overlay):
    deployment = named(overlay, "Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    [agent] = pod["initContainers"]
    assert agent["restartPolicy"] == "Always"  # a sidecar, started before Envoy
    assert agent["command"] == ["python", "-m", "ordermesh.gateway.agent"]
    assert agent["startupProbe"]["exec"]["command"][3:] == [
        str(path) for path in gateway_files(PROJECT)
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == "envoy-config")
    config = named(overlay, "ConfigMap", volume["configMap"]["name"])
    assert json.loads(config["data"]["envoy.json"]) == gateway_bootstrap(
        PROJECT, mutual_tls=MUTUAL_TLS[overlay])  # fmt: skip
    assert "descriptors.pb" in config["binaryData"]
    admin = gateway_bootstrap(PROJECT)["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"  # never reachable from outside the pod


def test_the_gateway_pod_runs_the_graphql_gateway_with_this_commits_supergraph(overlay):
    pod = named(overlay, "Deployment", "gateway")["spec"]["template"]["spec"]
    graphql = next(c for c in pod["containers"] if c["name"] == "graphql")
    volume = next(v for v in pod["volumes"] if v["name"] == "graphql-config")
    config = named(overlay, "ConfigMap", volume["configMap"]["name"])
    for name in PROJECT.federation.files:
        assert config["data"][name] == (ROOT / "gateway" / "graphql" / name).read_text()
        mount = next(m for m in graphql["volumeMounts"] if m.get("subPath") == name)
        assert mount["mountPath"] == f"/gateway/{name}"
    env = {e["name"]: e.get("value") for e in graphql["env"]}
    bootstrap = gateway_bootstrap(PROJECT)
    listeners = bootstrap["static_resources"]["listeners"]
    [subgraphs] = [listener for listener in listeners if listener["name"] == "subgraphs"]
    address = subgraphs["address"]["socket_address"]
    assert address["address"] == "127.0.0.1"  # the pod's loopback: Envoy and Hive share it
    assert env["SUBGRAPHS_URL"] == f"http://127.0.0.1:{address['port_value']}"
    [graphql_cluster] = [
        c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "graphql"
    ]
    endpoint = graphql_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == int(env["PORT"])


def secrets_read(container: dict[str, Any]) -> set[str]:
    """The Secrets a container reads, by name (env entries, envFrom)."""
    found = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    return found | {
        s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
    }


def test_the_edge_policy_signing_key_is_read_by_the_auth_service_only(overlay):
    for workload in of_kind(overlay, *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        mounted = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        assert POLICY_SIGNING_SECRET not in mounted
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            signer = workload["metadata"]["name"] == container["name"] == "auth"
            assert (POLICY_SIGNING_SECRET in secrets_read(container)) == signer, where
            assert ("EDGE_POLICY_SIGNING_KEY" in env_of(container)) == signer, where
    auth = next(c for c in containers(named(overlay, "Deployment", "auth")) if c["name"] == "auth")
    assert env_of(auth)["EDGE_POLICY_SIGNING_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": POLICY_SIGNING_SECRET, "key": "signing-key"}  # fmt: skip
    assert POLICY_VERIFY_SECRET != POLICY_SIGNING_SECRET


def test_every_follower_of_the_edge_policy_reads_its_verify_key_from_a_secret(overlay):
    verify = {"name": POLICY_VERIFY_SECRET, "key": "verify-key"}
    followers = {"gateway/agent"}
    for service in catalogue.CATALOGUE:
        if "edge_policy_verify_key" in service.settings.model_fields:
            # The service and its pod's create-admin step (the user service's settings).
            followers |= {f"{service.name}/{c['name']}" for c in with_settings(
                named(overlay, "Deployment", service.name))}  # fmt: skip
    assert {"auth/auth", "user/user", "order/order", "gateway/agent"} <= followers
    assert "edge_policy_verify_key" in AgentSettings.model_fields
    for workload in of_kind(overlay, *WORKLOADS):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            env = env_of(container)
            assert ("EDGE_POLICY_VERIFY_KEY" in env) == (where in followers), where
            if where in followers:
                assert env["EDGE_POLICY_VERIFY_KEY"]["valueFrom"]["secretKeyRef"] == verify, where


def test_the_gateway_pod_is_ready_only_once_its_agent_holds_a_verified_policy(overlay):
    deployment = named(overlay, "Deployment", "gateway")
    template = deployment["spec"]["template"]
    [agent] = template["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    port = int(env["PORT"])
    assert port == facts.AGENT_PORT
    assert env["HOST"] == "0.0.0.0"  # the kubelet probes the pod's address, not its loopback
    # A sidecar's readiness is its pod's: out of the Service's endpoints until `/ready` is 200.
    assert agent["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert {"name": "agent", "containerPort": port} in agent["ports"]
    # Its /metrics (the policy's age) is scraped, by Prometheus only.
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(port)}  # fmt: skip
    ingress = named(overlay, "NetworkPolicy", "gateway")["spec"]["ingress"]
    assert {
        "from": [PROMETHEUS_PEER],
        "ports": [{"protocol": "TCP", "port": port}],
    } in ingress


def test_the_docs_name_every_secret_the_manifests_read(overlay):
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for workload in of_kind(overlay, *PODS):
        for container in containers(workload):
            for secret in secrets_read(container):
                assert f"create secret generic {secret} " in docs, secret


# NetworkPolicies: the traffic they allow between the system's pods, on the ports they listen
# on, against what the catalogue says.


def _matches(peer: dict[str, Any], pod: str) -> bool:
    if "namespaceSelector" in peer or "ipBlock" in peer:
        return False  # outside the namespace
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return labels.get("app.kubernetes.io/name", pod) == pod


def _allowed(rules: list[dict[str, Any]], side: str, pod: str, port: int) -> bool:
    for rule in rules:
        peers = rule.get(side)
        if peers is not None and not any(_matches(p, pod) for p in peers):
            continue
        if "ports" not in rule or any(p["port"] == port for p in rule["ports"]):
            return True
    return False


def allowed_traffic(overlay: str) -> set[tuple[str, str, int]]:
    """(from, to, port) for every pod pair a connection between which both the sender's egress
    and the receiver's ingress policies allow (with a default deny on both)."""
    policies = of_kind(overlay, "NetworkPolicy")
    pods = {w["metadata"]["name"]: w for w in of_kind(overlay, *WORKLOADS)}
    listening = {
        name: {p["containerPort"] for c in containers(w) for p in c.get("ports", [])}
        for name, w in pods.items()
    }

    def selected(policy: dict[str, Any], pod: str) -> bool:
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        return labels.get("app.kubernetes.io/name", pod) == pod

    found = set()
    for source in pods:
        for target, ports in listening.items():
            for port in ports:
                egress = [r for p in policies if selected(p, source) for r in p["spec"].get(
                    "egress", [])]  # fmt: skip
                ingress = [r for p in policies if selected(p, target) for r in p["spec"].get(
                    "ingress", [])]  # fmt: skip
                if _allowed(egress, "to", target, port) and _allowed(ingress, "from", source, port):
                    found.add((source, target, port))
    return found


def expected_traffic(overlay: str) -> set[tuple[str, str, int]]:
    grpc, amqp = facts.GRPC_PORT, facts.AMQP_PORT
    expected = {("gateway", "redis", facts.REDIS_PORT)}
    for service in catalogue.CATALOGUE:
        if service.called_by_gateway:
            expected.add(("gateway", service.name, grpc))
        if service.graph or service.web:  # its subgraph or its pages, on its HTTP server
            expected.add(("gateway", service.name, facts.METRICS_PORT))
        if service.calls_gateway:  # as a client does
            expected.add((service.name, "gateway", facts.GATEWAY_PORT))
        expected.add((service.name, "redis", facts.REDIS_PORT))
        expected |= {
            (service.name, callee, grpc) for callee in catalogue.CATALOGUE.dependencies(service)
        }
        if Need.BROKER in service.needs:
            expected.add((service.name, "rabbitmq", amqp))
        if Need.STORE in service.needs and overlay == "dev":
            expected.add((service.name, "postgres", facts.POSTGRES_PORT))
        if service.monitors:  # it reads the alerts (and the cluster's Prometheus)
            expected.add((service.name, "alertmanager", facts.ALERTMANAGER_PORT))
    expected |= {("rabbitmq", "rabbitmq", p) for p in (facts.EPMD_PORT, facts.DIST_PORT)}
    return expected


def test_network_policies_allow_exactly_the_traffic_the_catalogue_says_exists(overlay):
    assert named(overlay, "NetworkPolicy", "default-deny")["spec"] == {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [],
    }  # fmt: skip
    assert allowed_traffic(overlay) == expected_traffic(overlay)


def test_from_outside_only_the_gateway_the_metrics_ports_and_alertmanager_are_reachable(overlay):
    for policy in of_kind(overlay, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:  # from anywhere
                assert policy["metadata"]["name"] == "gateway", policy["metadata"]["name"]
                assert rule["ports"] == [{"protocol": "TCP", "port": facts.GATEWAY_PORT}]
            elif any("namespaceSelector" in peer for peer in rule["from"]):
                assert rule["from"] == [PROMETHEUS_PEER]
                if policy["metadata"]["name"] == "alertmanager":  # the alerts it sends
                    assert rule["ports"] == [{"protocol": "TCP", "port": facts.ALERTMANAGER_PORT}]


def test_alertmanager_runs_the_repositorys_configuration_and_the_console_reads_it(overlay):
    deployment = named(overlay, "Deployment", "alertmanager")
    (container,) = containers(deployment)
    assert container["image"] == facts.ALERTMANAGER_IMAGE
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in container["args"]
    maps = of_kind(overlay, "ConfigMap")
    config = next(d for d in maps if d["metadata"]["name"].startswith("alertmanager-"))
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config["metadata"]["name"]}} in volumes
    assert config["data"]["alertmanager.yml"] == (ROOT / "monitoring/alertmanager.yml").read_text()
    service = named(overlay, "Service", "alertmanager")
    assert service["spec"]["ports"][0]["port"] == facts.ALERTMANAGER_PORT
    console = next(c for c in containers(named(overlay, "Deployment", "console")))
    url = f"http://alertmanager:{facts.ALERTMANAGER_PORT}"
    assert env_of(console)["ALERTMANAGER_URL"] == {"name": "ALERTMANAGER_URL", "value": url}


def test_dev_runs_one_of_everything_with_its_own_database():
    for workload in of_kind("dev", *WORKLOADS):
        assert workload["spec"]["replicas"] == 1, workload["metadata"]["name"]
    named("dev", "StatefulSet", "postgres")
    rabbitmq = named("dev", "ConfigMap", next(
        v["configMap"]["name"] for v in named("dev", "StatefulSet", "rabbitmq")["spec"][
            "template"]["spec"]["volumes"] if v["name"] == "config"))  # fmt: skip
    assert rabbitmq["data"]["rabbitmq.conf"].count("classic_config.nodes.") == 1


def test_prod_runs_every_workload_replicated_spread_budgeted_and_autoscaled():
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: d
               for d in of_kind("prod", "PodDisruptionBudget")}  # fmt: skip
    scalers = {d["spec"]["scaleTargetRef"]["name"]: d
               for d in of_kind("prod", "HorizontalPodAutoscaler")}  # fmt: skip
    # Redis (the registry) stays one: soft state, which the instances write again at once; so
    # does Alertmanager: Prometheus sends every firing alert again each minute.
    one = {"redis", "alertmanager"}
    deployments = [d for d in of_kind("prod", "Deployment") if d["metadata"]["name"] not in one]
    assert {d["metadata"]["name"] for d in deployments} == {
        *(s.name for s in catalogue.CATALOGUE), "gateway"}  # fmt: skip
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        assert deployment["spec"]["replicas"] >= 3, name
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} == {
            s["topologyKey"] for s in spread}, name  # fmt: skip
        assert budgets[name]["spec"]["maxUnavailable"] == 1, name
        assert scalers[name]["spec"]["minReplicas"] >= 3, name
        assert scalers[name]["spec"]["metrics"][0]["resource"]["name"] == "cpu", name
        for container in containers(deployment):
            assert not container["image"].endswith(":latest"), name


def test_prod_runs_a_three_node_broker_cluster_and_postgresql_outside():
    assert not [w for w in of_kind("prod", *WORKLOADS) if w["metadata"]["name"] == "postgres"]
    rabbitmq = named("prod", "StatefulSet", "rabbitmq")
    assert rabbitmq["spec"]["replicas"] == RABBITMQ_PROD_NODES == 3
    config = next(v["configMap"]["name"] for v in rabbitmq["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "config")  # fmt: skip
    conf = named("prod", "ConfigMap", config)["data"]["rabbitmq.conf"]
    assert conf.count("classic_config.nodes.") == 3
    assert "cluster_partition_handling = pause_minority" in conf
    for service in catalogue.CATALOGUE:
        if Need.BROKER not in service.needs:
            continue
        for container in with_settings(named("prod", "Deployment", service.name)):
            env = env_of(container)
            assert len(env["RABBITMQ_URL"]["value"].split(",")) == 3, service.name
            assert env["RABBITMQ_QUORUM_SIZE"]["value"] == "3", service.name
            assert env["STORE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": STORE_SECRET, "key": service.name}  # fmt: skip


def test_prod_pools_fit_the_databases_connections_at_the_autoscalers_maximum():
    """Every pod of a store-backed service opens up to STORE_POOL_SIZE connections and one for
    its outbox relay's listener; with every autoscaler at its maximum they must fit in what
    docs/kubernetes.md asks of the database (the services' default pool of 10 would not)."""
    scalers = {d["spec"]["scaleTargetRef"]["name"]: d["spec"]["maxReplicas"]
               for d in of_kind("prod", "HorizontalPodAutoscaler")}  # fmt: skip
    connections = 0
    for service in catalogue.CATALOGUE:
        if Need.STORE not in service.needs:
            continue
        for container in with_settings(named("prod", "Deployment", service.name)):
            pool = int(env_of(container)["STORE_POOL_SIZE"]["value"])
        connections += scalers[service.name] * (pool + 1)
    assert connections <= PROD_POSTGRES_CONNECTIONS
    assert (
        f"`max_connections` of at least {PROD_POSTGRES_CONNECTIONS}"
        in (ROOT / "docs" / "kubernetes.md").read_text()
    )


# PostgreSQL: a role per service with rights on its own database only.

STORES = [s for s in catalogue.CATALOGUE if Need.STORE in s.needs]


@pytest.mark.parametrize("service", STORES, ids=lambda s: s.name)
def test_a_service_runs_as_its_runtime_role_after_its_owner_made_the_schema(overlay, service):
    pod = named(overlay, "Deployment", service.name)["spec"]["template"]["spec"]
    schema = pod["initContainers"][0]  # before anything of the service runs
    assert schema["name"] == "schema"
    assert schema["command"] == ["python", "-m", "services.schema", service.name]
    assert schema["env"] == [{"name": "STORE_URL", "valueFrom": {"secretKeyRef": {
        "name": STORE_OWNER_SECRET, "key": service.name}}}]  # fmt: skip
    for container in with_settings(named(overlay, "Deployment", service.name)):
        assert env_of(container)["STORE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": STORE_SECRET, "key": service.name}  # fmt: skip


def test_no_superuser_or_owner_password_reaches_a_service(overlay):
    """The superuser's password reaches dev's server and its roles Job only; the roles'
    passwords that Job only; an owner's URL the schema step only; the runtime URLs the
    containers of the services that keep state (the service, the issuer's create-admin)."""
    readers: dict[str, set[str]] = {}
    for workload in of_kind(overlay, *PODS):
        for container in containers(workload):
            for secret in secrets_read(container):
                where = f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}"
                readers.setdefault(secret, set()).add(where)
    stores = {s.name for s in STORES}
    roles_job = {"Job/postgres-roles/roles"} if overlay == "dev" else set()
    server = {"StatefulSet/postgres/postgres"} if overlay == "dev" else set()
    assert readers.get(POSTGRES_SECRET, set()) == server | roles_job
    assert readers.get(POSTGRES_ROLES_SECRET, set()) == roles_job
    assert readers[STORE_OWNER_SECRET] == {f"Deployment/{n}/schema" for n in stores}
    issuer = catalogue.CATALOGUE.issuer.service
    assert readers[STORE_SECRET] == {f"Deployment/{n}/{n}" for n in stores} | {
        f"Deployment/{issuer}/create-admin"}  # fmt: skip


def test_dev_makes_every_database_and_its_roles_with_the_roles_script():
    job = named("dev", "Job", "postgres-roles")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["sh", "-c", databases.ROLES_COMMAND]
    volume = next(v for v in pod["volumes"] if v["name"] == "init")
    config = named("dev", "ConfigMap", volume["configMap"]["name"])
    assert config["data"]["init.sql"] == (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    env = env_of(container)
    for service in STORES:
        for role in databases.roles(service.name):
            assert env[databases.password_variable(role)]["valueFrom"]["secretKeyRef"] == {
                "name": POSTGRES_ROLES_SECRET, "key": role}  # fmt: skip
    assert env["PGHOST"]["value"] == "postgres"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # the next apply runs it again
    assert not [j for j in of_kind("prod", "Job") if j["metadata"]["name"] == "postgres-roles"]
    # It reaches the server, and nothing else does but the services that keep state.
    ingress = named("dev", "NetworkPolicy", "postgres")["spec"]["ingress"]
    clients = [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
               for rule in ingress for p in rule["from"]]  # fmt: skip
    assert sorted(clients) == sorted([*(s.name for s in STORES), "postgres-roles"])
    assert named("dev", "NetworkPolicy", "postgres-roles")["spec"]["egress"] == [
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}}}],
         "ports": [{"protocol": "TCP", "port": facts.POSTGRES_PORT}]}]  # fmt: skip


# The internal hops' secret, TLS at the gateway, the federation gateway's image.


def test_the_internal_token_reaches_envoy_its_agent_the_graphql_gateway_subgraphs_and_pages_only(
    overlay,
):
    readers = {
        f"{workload['metadata']['name']}/{container['name']}"
        for workload in of_kind(overlay, *PODS)
        for container in containers(workload)
        if "INTERNAL_TOKEN" in env_of(container)
    }
    subgraphs = {f"{s.name}/{s.name}" for s in catalogue.CATALOGUE.graph_services()}
    assert subgraphs == {"user/user", "inventory/inventory", "order/order"}
    pages = {f"{s.name}/{s.name}" for s in catalogue.CATALOGUE.web_services()}
    assert pages == {"console/console", "storefront/storefront"}
    assert readers == {"gateway/envoy", "gateway/agent", "gateway/graphql"} | subgraphs | pages
    for workload in of_kind(overlay, *PODS):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert (INTERNAL_SECRET in secrets_read(container)) == (where in readers)
            if where in readers:
                assert env_of(container)["INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                    "name": INTERNAL_SECRET, "key": "token"}  # fmt: skip


def test_envoy_serves_tls_with_the_certificate_of_the_mounted_secret(overlay):
    pod = named(overlay, "Deployment", "gateway")["spec"]["template"]["spec"]
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get(
        "secretName") == GATEWAY_TLS_SECRET)  # fmt: skip
    # Readable by the pod's group (fsGroup, a group of Envoy's user too), by no other user.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] > 0
    [mount] = [m for m in envoy["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": str(GATEWAY_TLS_DIR),
                     "readOnly": True}  # fmt: skip
    # The bootstrap names the Secret's keys (a kubernetes.io/tls Secret's: tls.crt, tls.key).
    [gateway] = [listener for listener in gateway_bootstrap(PROJECT)["static_resources"][
        "listeners"] if listener["name"] == "gateway"]  # fmt: skip
    [chain] = gateway["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"] == [{
        "certificate_chain": {"filename": f"{GATEWAY_TLS_DIR}/tls.crt"},
        "private_key": {"filename": f"{GATEWAY_TLS_DIR}/tls.key"}}]  # fmt: skip
    # Only Envoy's container has the key.
    for workload in of_kind(overlay, *PODS):
        for container in containers(workload):
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            holder = (workload["metadata"]["name"], container["name"]) == ("gateway", "envoy")
            assert (volume["name"] in mounted) == holder


def test_envoys_probes_and_service_fit_a_tls_port(overlay):
    """A probe speaking HTTP to the TLS port would fail its handshake: the kubelet opens a TCP
    connection (the pod's readiness is its agent's)."""
    pod = named(overlay, "Deployment", "gateway")["spec"]["template"]["spec"]
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert envoy[probe]["tcpSocket"] == {"port": facts.GATEWAY_PORT}, probe
    assert envoy["ports"] == [{"name": "https", "containerPort": facts.GATEWAY_PORT}]
    service = named(overlay, "Service", "gateway")
    port = facts.GATEWAY_PORT
    assert service["spec"]["ports"] == [{"name": "https", "port": port, "targetPort": port}]


def test_the_docs_say_how_to_create_the_gateways_tls_secret():
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    assert f"create secret tls {GATEWAY_TLS_SECRET} --cert=" in docs


# Mutual TLS on the gRPC hops inside the cluster: prod only.


def tls_files(workload: dict[str, Any], container: dict[str, Any], secret: str) -> str:
    """Where `container` has the Secret `secret` mounted (read-only, and only there)."""
    volumes = [name for name, s in secret_volumes(workload).items() if s == secret]
    assert len(volumes) == 1, (secret, volumes)
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volumes[0]]
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # a renewed Secret reaches the files
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == volumes[0])  # fmt: skip
    assert volume["secret"]["defaultMode"] == 0o440  # the pod's group only
    return str(mount["mountPath"])


@pytest.mark.parametrize("service", catalogue.CATALOGUE, ids=lambda s: s.name)
def test_in_prod_every_service_serves_and_calls_over_mutual_tls_from_its_own_secret(service):
    deployment = named("prod", "Deployment", service.name)
    secret = grpc_tls_secret(service.name)
    assert secret == f"ordermesh-{service.name}-tls"
    for container in containers(deployment):
        env = env_of(container)
        if container["name"] != service.name:  # its init steps call no service: no key
            assert not set(TLS_VARIABLES) & set(env), container["name"]
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            assert not mounted & set(secret_volumes(deployment)), container["name"]
            continue
        directory = tls_files(deployment, container, secret)
        for variable, key in TLS_VARIABLES.items():
            assert env[variable] == {"name": variable, "value": f"{directory}/{key}"}
    # No pod but the service's own mounts its Secret.
    for workload in of_kind("prod", *PODS):
        if workload["metadata"]["name"] != service.name:
            assert secret not in secret_volumes(workload).values(), workload["metadata"]["name"]


def test_in_prod_envoy_calls_every_grpc_cluster_over_mutual_tls_naming_the_service():
    gateway = named("prod", "Deployment", "gateway")
    pod = gateway["spec"]["template"]["spec"]
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    directory = tls_files(gateway, envoy, GATEWAY_CLIENT_TLS_SECRET)
    # Only Envoy's container has the client key.
    for container in containers(gateway):
        mounted = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        assert (directory in mounted.values()) == (container["name"] == "envoy")
    volume = next(v for v in pod["volumes"] if v["name"] == "envoy-config")
    bootstrap = json.loads(named("prod", "ConfigMap", volume["configMap"]["name"])["data"][
        "envoy.json"])  # fmt: skip
    grpc_clusters = {}
    for cluster in bootstrap["static_resources"]["clusters"]:
        options = cluster.get("typed_extension_protocol_options", {}).values()
        if any("http2_protocol_options" in o["explicit_http_config"] for o in options):
            grpc_clusters[cluster["name"]] = cluster
        else:  # HTTP (the federation gateway, the subgraphs): not the services' gRPC port
            assert "transport_socket" not in cluster, cluster["name"]
    # Every service it calls over gRPC (the routed ones, the auth check, the rate limits) and
    # nothing else.
    assert set(grpc_clusters) == {s.name for s in catalogue.CATALOGUE if s.called_by_gateway}
    for name, cluster in grpc_clusters.items():
        socket = cluster["transport_socket"]
        assert socket["name"] == "envoy.transport_sockets.tls", name
        tls = socket["typed_config"]
        assert tls["@type"].endswith("transport_sockets.tls.v3.UpstreamTlsContext"), name
        assert tls["sni"] == name
        context = tls["common_tls_context"]
        assert context["tls_certificates"] == [{
            "certificate_chain": {"filename": f"{directory}/tls.crt"},
            "private_key": {"filename": f"{directory}/tls.key"}}]  # fmt: skip
        assert context["validation_context"] == {
            "trusted_ca": {"filename": f"{directory}/ca.crt"},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": name}}],
        }


def test_in_prod_no_fault_switch_can_be_turned_on():
    """Every service's serving container and the gateway's agent forbid the fault switches: a
    flag file given to one of them by mistake stops it at start (the settings' check)."""
    guarded = [named("prod", "Deployment", s.name) for s in catalogue.CATALOGUE]
    guarded.append(named("prod", "Deployment", "gateway"))
    for workload in guarded:
        name = workload["metadata"]["name"]
        serving = next(c for c in containers(workload) if c["name"] in (name, "agent"))
        env = env_of(serving)
        assert env["FAULT_SWITCHES_FORBIDDEN"]["value"] == "true", name
        assert "FAULT_FLAGS_FILE" not in env, name
    with pytest.raises(ConfigError, match="fault switches are forbidden"), mock.patch.dict(
        os.environ,
        {"SERVICE_NAME": "order", "FAULT_SWITCHES_FORBIDDEN": "true",
         "FAULT_FLAGS_FILE": "/tmp/flags.json"},
    ):  # fmt: skip
        load(ServiceSettings)


def test_dev_stays_plaintext_inside_the_cluster():
    for workload in of_kind("dev", *PODS):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert not set(TLS_VARIABLES) & set(env_of(container)), where
        # The gateway's serving certificate is the only one.
        for secret in secret_volumes(workload).values():
            assert secret in (GATEWAY_TLS_SECRET, RABBITMQ_SECRET), secret
    assert "UpstreamTlsContext" not in json.dumps(gateway_bootstrap(PROJECT))
    assert "UpstreamTlsContext" in json.dumps(gateway_bootstrap(PROJECT, mutual_tls=True))


def test_the_docs_say_how_to_make_every_mounted_secret(overlay):
    """Each certificate's Secret: named, with its cert-manager Certificate."""
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for workload in of_kind(overlay, *PODS):
        for secret in secret_volumes(workload).values():
            # A service's own certificate by the rule that names each (ordermesh-<service>-tls).
            own = re.fullmatch(r"ordermesh-[a-z0-9]+-tls", secret) and secret[10:-4] in {
                s.name for s in catalogue.CATALOGUE
            }
            named = f"`{secret}`" in docs or f" {secret} " in docs
            assert named or (own and "`ordermesh-<service>-tls`" in docs), secret
    if MUTUAL_TLS[overlay]:
        for shown in ("kind: Issuer", "kind: Certificate", "- server auth", "- client auth"):
            assert shown in docs, shown
        assert "kubectl -n ordermesh rollout restart deployment" in docs


@pytest.mark.parametrize(
    ("overlay", "image"),
    [("dev", "localhost/ordermesh-graphql:latest"), ("prod", "ordermesh-graphql:0.1.0")],
)
def test_the_graphql_gateway_runs_our_image(overlay, image):
    pod = named(overlay, "Deployment", "gateway")["spec"]["template"]["spec"]
    graphql = next(c for c in pod["containers"] if c["name"] == "graphql")
    assert graphql["image"] == image
    env = env_of(graphql)
    assert env["CORS_ORIGINS"] == {"name": "CORS_ORIGINS", "value": ""}  # none by default
