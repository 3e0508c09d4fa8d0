"""The service catalogue: every service of the system, named once.

An entry says what the contracts cannot: the service's name (its package `services.<name>`,
its command, its cluster at the gateway and its queues' prefix), its settings class (what it
reads from the environment), the gRPC APIs it serves, the services it calls and whether it is
one of the gateway's own services. The rest is derived, from the contracts or the settings:

- its dependencies (`needs`): the broker and a store if its settings are `BackboneSettings`,
  the token issuer if they are `AuthenticatedSettings`, the registry always;
- its roles: it notifies through the providers if its settings are `NotifierSettings`, signs
  the edge policy if `PolicySignerSettings` (services.roles), follows it if `BackboneSettings`
  (which hold the policy's public key);
- the address variable of each service it calls (`<NAME>_SERVICE_ADDR`, a settings field);
- the events it publishes and the commands it takes, from the `(common.v1.route)` of the
  messages of its packages; the access level of each RPC, from `(common.v1.access)`.

`make up`, the test system (`harness.system`), the gateway (`gateway.envoy`) and its auth
policy (`services.auth`), and each service's variables in every deployment
(`deploy.environment`: the harness, compose.yaml, the Kubernetes manifests) all read it.
Adding a service touches its package, its contract and one entry here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from ordermesh import contracts
from ordermesh.config import ServiceSettings
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.runtime import AuthenticatedSettings, BackboneSettings

from services.auth.config import AuthSettings
from services.console.config import ConsoleSettings
from services.inventory.config import InventorySettings
from services.issuer import ISSUER
from services.notification.config import NotificationSettings
from services.order.config import OrderSettings
from services.ratelimit.config import RateLimitSettings
from services.roles import (
    GatewayClientSettings,
    MonitorSettings,
    NotifierSettings,
    PolicySignerSettings,
)
from services.storefront.config import StorefrontSettings
from services.user.config import UserSettings

__all__ = [
    "CATALOGUE",
    "ISSUER",
    "OPERATOR_API",
    "SAGA_API",
    "Need",
    "Service",
    "domain_services",
    "entry",
    "graph_services",
    "in_start_order",
    "serving",
    "web_services",
]


class Need(StrEnum):
    """What a service needs besides other services."""

    BROKER = "broker"
    STORE = "store"
    REGISTRY = "registry"


# The operator API over its messages that every service with a runtime (a store and a broker)
# serves (services.defaults, ordermesh.operator_api); the gateway routes a call to the service the
# call names.
OPERATOR_API = "ops.v1.OperatorService"
# The operator API of the sagas a service orchestrates (ordermesh.saga_operations).
SAGA_API = "ops.v1.SagaService"


@dataclass(frozen=True)
class Service:
    name: str
    settings: type[ServiceSettings]
    # Full names of the gRPC APIs it serves besides the operator API every service with a
    # runtime has (its own, and the sagas' operator API if it runs sagas): the gateway routes
    # them by their access levels, with that operator API (`routed_apis`).
    serves: tuple[str, ...] = ()
    # The services it calls over gRPC, besides the token issuer (derived from its settings).
    calls: tuple[str, ...] = ()
    # One of the gateway's own services (the auth check, the global rate limits).
    gateway: bool = False
    # It serves a GraphQL subgraph (`services.<name>.graph`), part of the gateway's supergraph.
    graph: bool = False
    # The path under which the gateway serves its web pages (e.g. "/console"), from its
    # instances' HTTP servers beside /metrics; empty: it has none.
    web: str = ""
    # The gateway's root, `/`, leads to its web pages (one service at most).
    home: bool = False

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def command(self) -> tuple[str, ...]:
        return ("python", "-m", self.module)

    @property
    def needs(self) -> frozenset[Need]:
        backbone = (
            {Need.BROKER, Need.STORE} if issubclass(self.settings, BackboneSettings) else set()
        )
        return frozenset({Need.REGISTRY, *backbone})

    @property
    def routed_apis(self) -> tuple[str, ...]:
        """The APIs the gateway routes to it: its own (a domain service's), and the operator
        API of every service with a runtime, the gateway's own included."""
        own = () if self.gateway else self.serves
        return own + ((OPERATOR_API,) if issubclass(self.settings, BackboneSettings) else ())

    @property
    def called_by_gateway(self) -> bool:
        """The gateway calls its gRPC server: it routes APIs to it, or it is one of the
        gateway's own services (the console's pages are on its HTTP server instead)."""
        return self.gateway or bool(self.routed_apis)

    @property
    def verifies_tokens(self) -> bool:
        return issubclass(self.settings, AuthenticatedSettings)

    @property
    def notifies(self) -> bool:
        """It sends through the notification providers (SMTP, SMS, push)."""
        return issubclass(self.settings, NotifierSettings)

    @property
    def signs_policy(self) -> bool:
        """It signs the edge policy: the only holder of its private key."""
        return issubclass(self.settings, PolicySignerSettings)

    @property
    def follows_policy(self) -> bool:
        """It holds the edge policy's public key (its token checks refuse revoked sessions)."""
        return issubclass(self.settings, BackboneSettings)

    @property
    def calls_gateway(self) -> bool:
        """It calls the system through its gateway, as a client does (the console)."""
        return issubclass(self.settings, GatewayClientSettings)

    @property
    def monitors(self) -> bool:
        """It reads what the system publishes about itself (metrics, alerts, traces, logs)."""
        return issubclass(self.settings, MonitorSettings)

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The services it calls: the token issuer first (for its keys), then its own calls."""
        issuer = (ISSUER.service,) if self.verifies_tokens and self.name != ISSUER.service else ()
        return issuer + tuple(c for c in self.calls if c not in issuer)

    @staticmethod
    def address_variable(callee: str) -> str:
        """The setting that gives the address of `callee`, when the registry does not."""
        return f"{callee.upper()}_SERVICE_ADDR"

    @property
    def packages(self) -> tuple[str, ...]:
        """Its contract packages, e.g. ("user.v1",)."""
        return tuple(dict.fromkeys(api.rsplit(".", 1)[0] for api in self.serves))

    def apis(self) -> list[ServiceDescriptor]:
        """The descriptors of the APIs the gateway routes to it (importing their generated
        modules)."""
        return [_api_descriptor(api) for api in self.routed_apis]

    def routed_messages(self, kind: int) -> list[Descriptor]:
        """The messages of its packages with a `(common.v1.route)` of `kind`
        (options_pb2.MESSAGE_KIND_EVENT: what it publishes; _COMMAND: what it takes)."""
        found = []
        for package in self.packages:
            for module in ("events", "commands"):
                try:
                    generated = contracts.module(f"{package.replace('.', '/')}/{module}.proto")
                except ModuleNotFoundError:
                    continue
                for message in generated.DESCRIPTOR.message_types_by_name.values():
                    options = message.GetOptions()
                    if (
                        options.HasExtension(options_pb2.route)
                        and options.Extensions[options_pb2.route].kind == kind
                    ):
                        found.append(message)
        return found


def _api_descriptor(full_name: str) -> ServiceDescriptor:
    """`user.v1.UserService` from `user/v1/user_service.proto` (the contracts' file layout)."""
    package, name = full_name.rsplit(".", 1)
    domain = package.split(".")[0]
    generated: Any = contracts.module(f"{package.replace('.', '/')}/{domain}_service.proto")
    descriptor: ServiceDescriptor = generated.DESCRIPTOR.services_by_name[name]
    return descriptor


CATALOGUE: tuple[Service, ...] = (
    Service("user", UserSettings, serves=("user.v1.UserService",), graph=True),
    Service("inventory", InventorySettings, serves=("inventory.v1.InventoryService",), graph=True),
    Service(
        "order",
        OrderSettings,
        serves=("order.v1.OrderService", "order.v2.OrderService", SAGA_API),
        calls=("inventory",),
        graph=True,
    ),
    Service("notification", NotificationSettings, serves=("notification.v1.NotificationService",)),
    # The operator console: web pages at the gateway, reaching the system through it.
    Service("console", ConsoleSettings, web="/console"),
    # The customers' shop: web pages at the gateway (its root leads there), reaching the system
    # through it with the customer's token, as any client of the public API.
    Service("storefront", StorefrontSettings, web="/shop", home=True),
    Service("auth", AuthSettings, gateway=True),
    Service("ratelimit", RateLimitSettings, gateway=True),
)


def pool_size_within(connections: int, instances: int) -> int:
    """The PostgreSQL pool (STORE_POOL_SIZE) each instance may have when every store-backed
    service runs `instances` of them on one server that allows `connections`: an instance
    opens its pool and, while its relay holds the outbox lease, one connection to LISTEN."""
    stored = sum(Need.STORE in service.needs for service in CATALOGUE)
    pool = connections // (stored * instances) - 1
    if pool < 1:
        raise ValueError(
            f"{instances} instances of each of {stored} store-backed services do not fit in "
            f"{connections} PostgreSQL connections: raise max_connections or use a pooler"
        )
    return pool


def entry(name: str) -> Service:
    for service in CATALOGUE:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r} in the catalogue")


def domain_services() -> list[Service]:
    """The services behind the gateway whose own RPCs it routes (not the console, which
    serves web pages only)."""
    return [s for s in CATALOGUE if not s.gateway and s.serves]


def web_services() -> list[Service]:
    """The services whose web pages the gateway serves (gateway.envoy.web)."""
    return [s for s in CATALOGUE if s.web]


def graph_services() -> list[Service]:
    """The services whose subgraphs the GraphQL gateway composes (tools/supergraph.py)."""
    return [s for s in CATALOGUE if s.graph]


def serving(full_name: str) -> list[Service]:
    """The services the gateway routes the gRPC API `full_name` to (e.g. "order.v1.OrderService":
    the order service; the operator API: every service with a runtime)."""
    found = [service for service in CATALOGUE if full_name in service.routed_apis]
    if not found:
        raise KeyError(f"no service in the catalogue serves {full_name}: add it to its entry")
    return found


def in_start_order(services: Sequence[Service] = CATALOGUE) -> list[Service]:
    """`services` with each after those it calls (its dependencies answer when it starts)."""
    ordered: dict[str, Service] = {}

    def visit(service: Service, path: tuple[str, ...]) -> None:
        if service.name in path:
            raise ValueError(f"services call each other in a cycle: {' -> '.join(path)}")
        for callee in service.dependencies:
            visit(entry(callee), (*path, service.name))
        ordered.setdefault(service.name, service)

    for service in services:
        visit(service, ())
    wanted = {s.name for s in services}
    return [s for s in ordered.values() if s.name in wanted]
