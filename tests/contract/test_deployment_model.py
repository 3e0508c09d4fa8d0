"""One deployment model: `make up` and the tests (the local harness), compose.yaml and the
Kubernetes manifests give every service of the catalogue, and the gateway's agent, the same
set of settings (ordermesh.deploy.environment decides them once; each target only spells them).

Each target's own variables are named here, with why they are its own: how a process listens
and is named there, its probes' and its drain's timing, prod's sizes, the passwords
Kubernetes defines before the URLs that refer to them, compose's switch for traces, and what
each target runs of the monitoring (`Target.monitoring()`: a monitor is given exactly that).
Anything else one target gives and another does not fails the test: a target that forgets a
variable, or decides one alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from ordermesh.deploy.compose import ComposeTarget
from ordermesh.deploy.environment import MONITORING, PROVIDERS
from ordermesh.deploy.manifests.environment import KubernetesTarget
from ordermesh.deploy.manifests.secrets import NOTIFICATION_SECRET

from harness.gateway import LocalGateway
from harness.system import ServiceProcess, System
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
AGENT = "gateway-agent"
# How a service process runs in each target, not what it is given by the model.
# The tests' quick pace; the fault switches' file, which only `make up` and the tests give
# (no deployment may turn a fault on: ordermesh.switches).
LOCAL_OWN = {"HEALTH_INTERVAL_S", "NOTIFICATION_RETRY_DELAYS_S", "FAULT_FLAGS_FILE"}
# Where the services send their spans: the profile `observability`'s Jaeger when the operator
# sets it (empty by default), in compose only.
COMPOSE_OWN = {"GRPC_HOST", "GRPC_PORT", "METRICS_PORT", "PORT_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT"}
KUBERNETES_OWN = {
    *("GRPC_HOST", "GRPC_PORT", "METRICS_PORT", "INSTANCE_ID", "ADVERTISED_HOST"),
    *("DRAIN_DELAY_S", "SHUTDOWN_GRACE_S"),
    # Defined before the URLs that refer to them by `$(NAME)`.
    *("REDIS_PASSWORD", "RABBITMQ_PASSWORD"),
}
# Prod's sizes and its mutual TLS's files, besides; and its guard against fault switches.
PROD_OWN = {
    "STORE_POOL_SIZE",
    "RABBITMQ_QUORUM_SIZE",
    "GRPC_TLS_CERT",
    "GRPC_TLS_KEY",
    "GRPC_TLS_CA",
    "FAULT_SWITCHES_FORBIDDEN",
}
# Where the agent listens: the harness's on 127.0.0.1 by default; and, as the services', the
# fault switches' file (the gateway's switches), `make up`'s and the tests' only; the harness's
# agent runs in a directory of its own, so it is told where the descriptor set is (an image's
# is at the default, gen/descriptors.pb under its working directory).
AGENT_OWN = {
    "local": {"PORT", "FAULT_FLAGS_FILE", "DESCRIPTOR_SET"},
    "compose": {"HOST", "PORT"},
    "kubernetes": {"HOST", "PORT"},
}


def _documents(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


def _container_names(container: dict[str, Any]) -> set[str]:
    names = {e["name"] for e in container.get("env", []) if "name" in e}  # not `$patch`
    for source in container.get("envFrom", []):
        # The notifier's Secret holds its providers' settings (docs/kubernetes.md).
        assert source == {"secretRef": {"name": NOTIFICATION_SECRET}}
        names |= set(PROVIDERS)
    return names


def _kubernetes(name: str, path: str) -> set[str]:
    """The settings of the container `name` (the service's own, or the gateway's agent)."""
    for doc in _documents(path):
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            if container["name"] == name and "env" in container:
                return _container_names(container)
    raise LookupError(f"no container {name} in {path}")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> System:
    """A system as `make up` makes it (a registry given; its gateway's URL and certificate's
    CA, its Prometheus, Alertmanager and log files, for the console), its processes made, none
    started."""
    directory = tmp_path_factory.mktemp("system")
    system = System(
        directory,
        amqp_url="amqp://broker/",
        env={"REDIS_URL": "redis://registry"},
        gateway_url="https://127.0.0.1:8080",
        gateway_ca=str(directory / "ca.crt"),
        monitoring={
            "PROMETHEUS_URL": "http://127.0.0.1:9090",
            "ALERTMANAGER_URL": "http://127.0.0.1:9093",
            "LOG_DIR": str(directory / "run"),
        },
    )
    assert set(system.services) == {s.name for s in catalogue.CATALOGUE}
    for name in system.services:
        system.processes[name] = ServiceProcess(name, directory / name, {}, instance=name)
    return system


def _local_agent(system: System, directory: Path) -> set[str]:
    with mock.patch.dict(os.environ, clear=True):  # what the harness gives, not this shell's
        gateway = LocalGateway(
            directory,
            redis_url="redis://registry",
            secrets=system.gateway_secrets,
            flags_file=system.flags_file,  # as `make up` gives it
        )
    return set(gateway.agent._env)


def _compose(name: str) -> set[str]:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    return set(services[name]["environment"])


def _monitoring(local: System) -> dict[str, set[str]]:
    """What each target runs of MONITORING (`make up`: its Prometheus, Alertmanager and the
    processes' log files; compose: Prometheus and Alertmanager, Jaeger with its profile;
    Kubernetes: the cluster's Prometheus and Alertmanager)."""
    found = {
        "local": set(local.monitoring),
        "compose": set(ComposeTarget().monitoring()),
        "kubernetes": set(KubernetesTarget().monitoring()),
    }
    for names in found.values():
        assert names <= set(MONITORING)
    return found


@pytest.mark.parametrize("name", [s.name for s in catalogue.CATALOGUE])
def test_every_target_gives_a_service_the_same_settings(name, local):
    given = {
        "local": set(local._env_of(name)) - LOCAL_OWN,
        "compose": _compose(name) - COMPOSE_OWN,
        "kubernetes": _kubernetes(name, "deploy/kubernetes/base/services.yaml") - KUBERNETES_OWN,
    }
    # Of the monitoring, a monitor is given what its target runs; anyone else nothing.
    monitors = catalogue.CATALOGUE.entry(name).monitors
    runs = {t: names if monitors else set() for t, names in _monitoring(local).items()}
    for target in given:
        assert given[target] & set(MONITORING) == runs[target], target
        given[target] -= set(MONITORING)
    assert given["local"] == given["compose"] == given["kubernetes"], given
    # Prod's patch replaces the container's `env` and keeps base's `envFrom` (a merge).
    kept = _kubernetes(name, "deploy/kubernetes/base/services.yaml") & set(PROVIDERS)
    prod = _kubernetes(name, "deploy/kubernetes/overlays/prod/patches.yaml") | kept
    assert prod & set(MONITORING) == runs["kubernetes"]
    assert prod - KUBERNETES_OWN - PROD_OWN - set(MONITORING) == given["kubernetes"]


def test_every_target_gives_the_gateway_agent_the_same_settings(local, tmp_path):
    given = {
        "local": _local_agent(local, tmp_path) - AGENT_OWN["local"],
        "compose": _compose(AGENT) - AGENT_OWN["compose"],
        "kubernetes": _kubernetes("agent", "deploy/kubernetes/base/gateway.yaml")
        - AGENT_OWN["kubernetes"]
        - KUBERNETES_OWN,
    }
    assert given["local"] == given["compose"] == given["kubernetes"], given
