"""The Kubernetes manifests keep their conventions on every object, as `kubectl kustomize`
renders each overlay (`make lint` validates the same renderings against Kubernetes' schemas).

No cluster runs here: these are the promises the manifests make on paper — probes, a restricted
security context, requests and limits, graceful termination longer than the drain, rolling
updates with no unavailable replica, secrets only by reference (the edge policy's signing key
in a Secret only the auth service reads), a gateway pod that is not Ready before its agent holds
a verified edge policy and endpoints, and NetworkPolicies that allow exactly the traffic the
service catalogue says exists.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import kubernetes
from gateway.agent import AgentSettings
from services import catalogue
from services.catalogue import Need

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = ("dev", "prod")
WORKLOADS = ("Deployment", "StatefulSet")
SECRET_NAMES = re.compile(r"PASSWORD|PASS$|TOKEN|SECRET|COOKIE|_KEY$|^STORE_URL$")


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


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


def test_every_object_is_in_the_namespace_and_the_namespace_is_restricted(overlay):
    for doc in rendered(overlay):
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"].get("namespace") == kubernetes.NAMESPACE, doc["metadata"]


def test_every_container_is_unprivileged_with_requests_and_limits(overlay):
    for workload in of_kind(overlay, *WORKLOADS):
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
    # Kubernetes' own gRPC probe against the health service: readiness follows the
    # dependencies, liveness and startup only the process (chassis.grpc.LIVENESS).
    assert container["readinessProbe"]["grpc"] == {"port": kubernetes.GRPC_PORT}
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["grpc"] == {"port": kubernetes.GRPC_PORT, "service": "liveness"}
    env = env_of(container)
    drain = float(env["SHUTDOWN_GRACE_S"]["value"]) + float(env["DRAIN_DELAY_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert env["ADVERTISED_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for callee in service.dependencies:
        assert env[service.address_variable(callee)]["value"] == f"{callee}:{kubernetes.GRPC_PORT}"
        named(overlay, "Service", callee)  # the fallback address resolves


def test_secrets_are_referenced_never_written(overlay):
    assert not of_kind(overlay, "Secret")
    for workload in of_kind(overlay, *WORKLOADS):
        for container in containers(workload):
            defined: set[str] = set()
            for name, entry in env_of(container).items():
                where = f"{workload['metadata']['name']}/{container['name']}: {name}"
                if SECRET_NAMES.search(name):
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
    assert agent["command"] == ["python", "-m", "gateway.agent"]
    assert agent["startupProbe"]["exec"]["command"][3:] == [
        str(path) for path in kubernetes.gateway_files()
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == "envoy-config")
    config = named(overlay, "ConfigMap", volume["configMap"]["name"])
    assert json.loads(config["data"]["envoy.json"]) == kubernetes.gateway_bootstrap()
    assert "descriptors.pb" in config["binaryData"]
    admin = kubernetes.gateway_bootstrap()["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"  # never reachable from outside the pod


def test_the_gateway_pod_runs_the_graphql_gateway_with_this_commits_supergraph(overlay):
    pod = named(overlay, "Deployment", "gateway")["spec"]["template"]["spec"]
    graphql = next(c for c in pod["containers"] if c["name"] == "graphql")
    volume = next(v for v in pod["volumes"] if v["name"] == "graphql-config")
    config = named(overlay, "ConfigMap", volume["configMap"]["name"])
    for name in kubernetes.GRAPHQL_FILES:
        assert config["data"][name] == (ROOT / "gateway" / "graphql" / name).read_text()
        mount = next(m for m in graphql["volumeMounts"] if m.get("subPath") == name)
        assert mount["mountPath"] == f"/gateway/{name}"
    env = {e["name"]: e["value"] for e in graphql["env"]}
    bootstrap = kubernetes.gateway_bootstrap()
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
        assert kubernetes.POLICY_SIGNING_SECRET not in mounted
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            signer = workload["metadata"]["name"] == container["name"] == "auth"
            assert (kubernetes.POLICY_SIGNING_SECRET in secrets_read(container)) == signer, where
            assert ("EDGE_POLICY_SIGNING_KEY" in env_of(container)) == signer, where
    auth = next(c for c in containers(named(overlay, "Deployment", "auth")) if c["name"] == "auth")
    assert env_of(auth)["EDGE_POLICY_SIGNING_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": kubernetes.POLICY_SIGNING_SECRET, "key": "signing-key"}  # fmt: skip
    assert kubernetes.POLICY_VERIFY_SECRET != kubernetes.POLICY_SIGNING_SECRET


def test_every_follower_of_the_edge_policy_reads_its_verify_key_from_a_secret(overlay):
    verify = {"name": kubernetes.POLICY_VERIFY_SECRET, "key": "verify-key"}
    followers = {"gateway/agent"}
    for service in catalogue.CATALOGUE:
        if "edge_policy_verify_key" in service.settings.model_fields:
            # The service and its pod's create-admin step (the user service's settings).
            followers |= {f"{service.name}/{c['name']}" for c in containers(
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
    assert port == kubernetes.AGENT_PORT
    assert env["HOST"] == "0.0.0.0"  # the kubelet probes the pod's address, not its loopback
    # A sidecar's readiness is its pod's: out of the Service's endpoints until `/ready` is 200.
    assert agent["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert {"name": "agent", "containerPort": port} in agent["ports"]
    # Its /metrics (the policy's age) is scraped, by Prometheus only.
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(port)}  # fmt: skip
    ingress = named(overlay, "NetworkPolicy", "gateway")["spec"]["ingress"]
    assert {
        "from": [kubernetes.PROMETHEUS_PEER],
        "ports": [{"protocol": "TCP", "port": port}],
    } in ingress


def test_the_docs_name_every_secret_the_manifests_read(overlay):
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for workload in of_kind(overlay, *WORKLOADS):
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
    grpc, amqp = kubernetes.GRPC_PORT, kubernetes.AMQP_PORT
    expected = {("gateway", "redis", kubernetes.REDIS_PORT)}
    for service in catalogue.CATALOGUE:
        expected.add(("gateway", service.name, grpc))
        if service.graph:  # its GraphQL subgraph, on its HTTP server
            expected.add(("gateway", service.name, kubernetes.METRICS_PORT))
        expected.add((service.name, "redis", kubernetes.REDIS_PORT))
        expected |= {(service.name, callee, grpc) for callee in service.dependencies}
        if Need.BROKER in service.needs:
            expected.add((service.name, "rabbitmq", amqp))
        if Need.STORE in service.needs and overlay == "dev":
            expected.add((service.name, "postgres", kubernetes.POSTGRES_PORT))
    expected |= {("rabbitmq", "rabbitmq", p) for p in (kubernetes.EPMD_PORT, kubernetes.DIST_PORT)}
    return expected


def test_network_policies_allow_exactly_the_traffic_the_catalogue_says_exists(overlay):
    assert named(overlay, "NetworkPolicy", "default-deny")["spec"] == {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [],
    }  # fmt: skip
    assert allowed_traffic(overlay) == expected_traffic(overlay)


def test_from_outside_only_the_gateway_and_the_metrics_ports_are_reachable(overlay):
    for policy in of_kind(overlay, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:  # from anywhere
                assert policy["metadata"]["name"] == "gateway", policy["metadata"]["name"]
                assert rule["ports"] == [{"protocol": "TCP", "port": kubernetes.GATEWAY_PORT}]
            elif any("namespaceSelector" in peer for peer in rule["from"]):
                assert rule["from"] == [kubernetes.PROMETHEUS_PEER]


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
    # Redis (the registry) stays one: soft state, which the instances write again at once.
    deployments = [d for d in of_kind("prod", "Deployment") if d["metadata"]["name"] != "redis"]
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
    assert rabbitmq["spec"]["replicas"] == kubernetes.RABBITMQ_PROD_NODES == 3
    config = next(v["configMap"]["name"] for v in rabbitmq["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "config")  # fmt: skip
    conf = named("prod", "ConfigMap", config)["data"]["rabbitmq.conf"]
    assert conf.count("classic_config.nodes.") == 3
    assert "cluster_partition_handling = pause_minority" in conf
    for service in catalogue.CATALOGUE:
        if Need.BROKER not in service.needs:
            continue
        for container in containers(named("prod", "Deployment", service.name)):
            env = env_of(container)
            assert len(env["RABBITMQ_URL"]["value"].split(",")) == 3, service.name
            assert env["RABBITMQ_QUORUM_SIZE"]["value"] == "3", service.name
            assert env["STORE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": kubernetes.STORE_SECRET, "key": service.name}  # fmt: skip


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
        for container in containers(named("prod", "Deployment", service.name)):
            pool = int(env_of(container)["STORE_POOL_SIZE"]["value"])
        connections += scalers[service.name] * (pool + 1)
    assert connections <= kubernetes.PROD_POSTGRES_CONNECTIONS
    assert (
        f"`max_connections` of at least {kubernetes.PROD_POSTGRES_CONNECTIONS}"
        in (ROOT / "docs" / "kubernetes.md").read_text()
    )
