"""Each process's variables, decided once from the service catalogue for every deployment target.

As eShop's AppHost, where `WithReference(rabbitMq)` decides a variable once for every publisher:
what a service's catalogue entry says it needs (the registry, the broker, a store), calls (each
callee's address), holds (the edge policy's public half as a follower, its private half as its
signer; the internal hops' secret for a service with a GraphQL subgraph) and sends through (the
notification providers) becomes its variables here, and nowhere else. Each target spells the
values in its own syntax by implementing `Target`: real addresses and ports for the local
processes (`make up` and the tests: the example's harness.system), `${VAR:?...}` for compose
(ordermesh.deploy.compose), Secret references and `$(VAR)` for Kubernetes
(ordermesh.deploy.manifests).

What is a target's own stays with it: how a process listens and is named, its probes, its
sizing (a pool, a quorum), its log level. The example's tests/contract/test_deployment_model.py
holds the three targets to the same set of variables for every service and the gateway's agent.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ordermesh import catalogue as catalogues
from ordermesh.catalogue import OPERATOR_API, SAGA_API, Catalogue, Need, Service

__all__ = [
    "BROKER",
    "CATALOGUE",
    "INTERNAL_TOKEN",
    "MONITORING",
    "POLICY_SIGNING_KEY",
    "POLICY_VERIFY_KEY",
    "PROVIDERS",
    "REGISTRY",
    "STORE",
    "Target",
    "agent_environment",
    "environment",
    "gateway_secrets",
    "internal_hops",
]

V = TypeVar("V")

REGISTRY = "REDIS_URL"
BROKER = "RABBITMQ_URL"
STORE = "STORE_URL"
# The edge policy's key pair (ordermesh.policy): the public half for every follower, the private
# half for its signer only.
POLICY_VERIFY_KEY = "EDGE_POLICY_VERIFY_KEY"
POLICY_SIGNING_KEY = "EDGE_POLICY_SIGNING_KEY"
# The secret of the internal hops (ordermesh.gateway.envoy's INTERNAL_HEADER).
INTERNAL_TOKEN = "INTERNAL_TOKEN"
# Where a runtime's process that reads the project's catalogue finds it (module:attribute).
CATALOGUE = "CATALOGUE"
# What a monitoring process may be told (ordermesh.roles.MonitorSettings).
MONITORING = ("PROMETHEUS_URL", "ALERTMANAGER_URL", "JAEGER_URL", "LOG_DIR")
# What a notifying service is told of its providers (ordermesh.roles.NotifierSettings).
PROVIDERS = (
    "SMTP_HOST",
    "SMTP_PORT",
    "SMS_PROVIDER_URL",
    "SMS_PROVIDER_TOKEN",
    "PUSH_PROVIDER_URL",
    "PUSH_PROVIDER_TOKEN",
)


class Target(Protocol[V]):
    """How a deployment target spells each kind of value (V: a string, or Kubernetes' entry)."""

    def registry(self) -> V | None:
        """The registry's Redis (REDIS_URL); None where a system runs without one (the
        harness's systems that test without Redis)."""

    def broker(self) -> V:
        """The broker (RABBITMQ_URL)."""

    def store(self, service: str) -> V:
        """The store of `service`, as its runtime role (STORE_URL)."""

    def address(self, callee: str, *, variable: str) -> V:
        """Where `callee` answers while the registry does not (`variable`: its setting)."""

    def secret(self, name: str) -> V:
        """The secret `name` (the policy's keys, the internal hops' secret)."""

    def providers(self) -> dict[str, V]:
        """The notification providers (PROVIDERS); none where the target hands them over
        whole (Kubernetes: a Secret as `envFrom`)."""

    def gateway(self) -> dict[str, V]:
        """Where a client inside the deployment reaches the gateway: GATEWAY_URL, and
        GATEWAY_CA where its certificate's CA is not one the system trusts."""

    def monitoring(self) -> dict[str, V]:
        """What the target runs of MONITORING (PROMETHEUS_URL, ALERTMANAGER_URL, JAEGER_URL,
        LOG_DIR), each where it runs."""

    def value(self, text: str) -> V:
        """A plain value, the same in every target."""


def internal_hops(target: Target[V]) -> dict[str, V]:
    """The internal hops' secret, for the processes that send or check it: Envoy, its agent,
    the federation gateway, and the serving process of each service with a GraphQL subgraph
    (never a one-shot step)."""
    return {INTERNAL_TOKEN: target.secret(INTERNAL_TOKEN)}


def gateway_secrets(target: Target[V]) -> dict[str, V]:
    """What the gateway's agent is given besides its registry and its files: the policy's
    public half (a policy it does not verify is never written) and the internal hops' secret
    (the subgraph listener's check)."""
    return {POLICY_VERIFY_KEY: target.secret(POLICY_VERIFY_KEY), **internal_hops(target)}


def environment(
    catalogue: Catalogue,
    service: Service,
    target: Target[V],
    *,
    serving: bool = True,
    catalogue_at: str = catalogues.DEFAULT,
) -> dict[str, V]:
    """The variables of `service` (of `catalogue`)'s serving process, or with `serving=False`
    of its one-shot steps (ordermesh.deploy.project.Step: the example's admin account), which
    serve nothing: without the internal hops' secret. `catalogue_at`: where a service that reads
    the catalogue (the gateway's auth service) imports it from."""
    env: dict[str, V] = {}
    registry = target.registry()
    if Need.REGISTRY in service.needs and registry is not None:
        env[REGISTRY] = registry
    if Need.BROKER in service.needs:
        env[BROKER] = target.broker()
    if Need.STORE in service.needs:
        env[STORE] = target.store(service.name)
    if service.follows_policy:
        env[POLICY_VERIFY_KEY] = target.secret(POLICY_VERIFY_KEY)
    if service.signs_policy:
        env[POLICY_SIGNING_KEY] = target.secret(POLICY_SIGNING_KEY)
    for callee in catalogue.dependencies(service):
        variable = service.address_variable(callee)
        env[variable] = target.address(callee, variable=variable)
    if service.notifies:
        env |= target.providers()
    if service.calls_gateway:
        env |= target.gateway()
        env["OPERATOR_API_SERVICES"] = target.value(_serving(catalogue, OPERATOR_API))
        env["SAGA_API_SERVICES"] = target.value(_serving(catalogue, SAGA_API))
    if service.monitors:
        env |= target.monitoring()
    if service.reads_catalogue:
        env[CATALOGUE] = target.value(catalogue_at)
    # Its subgraph, or its web pages, take calls carrying the secret only.
    if serving and (service.graph or service.web):
        env |= internal_hops(target)
    return env


def _serving(catalogue: Catalogue, api: str) -> str:
    return ",".join(service.name for service in catalogue.serving(api))


def agent_environment(
    target: Target[V], *, eds_dir: V, policy_dir: V, catalogue_at: str = catalogues.DEFAULT
) -> dict[str, V]:
    """The variables of the gateway's agent (ordermesh.gateway.agent): the registry it turns into
    Envoy's endpoints, the directories it writes Envoy's files to (`eds_dir`, `policy_dir`: where
    the target shares them with Envoy), where it finds the catalogue, and `gateway_secrets`."""
    registry = target.registry()
    if registry is None:
        raise ValueError("the gateway's agent needs the registry: give the target a REDIS_URL")
    env = {
        REGISTRY: registry,
        "EDS_DIR": eds_dir,
        "POLICY_DIR": policy_dir,
        CATALOGUE: target.value(catalogue_at),
    }
    return env | gateway_secrets(target)
