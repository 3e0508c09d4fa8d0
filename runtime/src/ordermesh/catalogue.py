"""A system's service catalogue: every service named once, and what follows from it.

A project names its services in one `Catalogue` (the example's: services/catalogue.py). An
entry says what the contracts cannot: the service's name (its package `services.<name>`, its
command, its cluster at the gateway and its queues' prefix), its settings class (what it reads
from the environment), the gRPC APIs it serves, the services it calls and whether it is one of
the gateway's own services. The rest is derived, from the contracts or the settings:

- its dependencies (`needs`): the broker and a store if its settings are `BackboneSettings`,
  the token issuer if they are `AuthenticatedSettings`, the registry always;
- its roles: it notifies through the providers if its settings are `NotifierSettings`, signs
  the edge policy if `PolicySignerSettings` (ordermesh.roles), follows it if
  `BackboneSettings` (which hold the policy's public key);
- the address variable of each service it calls (`<NAME>_SERVICE_ADDR`, a settings field);
- the events it publishes and the commands it takes, from the `(common.v1.route)` of the
  messages of its packages; the access level of each RPC, from `(common.v1.access)`.

The local launcher, the gateway's generators and its auth policy, and each service's variables
in every deployment read a project's catalogue.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload

from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from ordermesh import config, contracts
from ordermesh.config import ServiceSettings
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.roles import (
    DEFAULT_CATALOGUE,
    CatalogueReaderSettings,
    GatewayClientSettings,
    MonitorSettings,
    NotifierSettings,
    PolicySignerSettings,
)
from ordermesh.runtime import AuthenticatedSettings, BackboneSettings
from ordermesh.tokens import KeyIssuer

__all__ = ["DEFAULT", "OPERATOR_API", "SAGA_API", "Catalogue", "Need", "Service", "load"]


class Need(StrEnum):
    """What a service needs besides other services."""

    BROKER = "broker"
    STORE = "store"
    REGISTRY = "registry"


# Where the runtime's processes that read a project's catalogue (the gateway's agent and auth
# service, the Prometheus targets) find it unless told (CATALOGUE; ordermesh.roles).
DEFAULT = DEFAULT_CATALOGUE

# The operator API over its messages that every service with a runtime (a store and a broker)
# serves (ordermesh.defaults, ordermesh.operator_api); the gateway routes a call to the service the
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
    # The package run as `python -m`, when not the project's `services.<name>`: the runtime's
    # own services (the gateway's: ordermesh.gateway.auth, ordermesh.gateway.ratelimit).
    package: str = ""

    @property
    def module(self) -> str:
        return self.package or f"services.{self.name}"

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
    def reads_catalogue(self) -> bool:
        """It reads the project's catalogue: it is told where (CATALOGUE)."""
        return issubclass(self.settings, CatalogueReaderSettings)

    @property
    def monitors(self) -> bool:
        """It reads what the system publishes about itself (metrics, alerts, traces, logs)."""
        return issubclass(self.settings, MonitorSettings)

    @staticmethod
    def address_variable(callee: str) -> str:
        """The setting that gives the address of `callee`, when the registry does not."""
        return config.address_variable(callee)

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


@dataclass(frozen=True)
class Catalogue(Sequence[Service]):
    """Every service of a system, in the order given, and the token issuer whose keys verify
    every access token (`KeyIssuer`: one of the services)."""

    services: tuple[Service, ...]
    issuer: KeyIssuer

    def __post_init__(self) -> None:
        names = [service.name for service in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"a service is named twice in the catalogue: {names}")
        if self.issuer.service not in names:
            raise ValueError(f"the token issuer {self.issuer.service!r} is not in the catalogue")

    @overload
    def __getitem__(self, index: int) -> Service: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Service]: ...
    def __getitem__(self, index: int | slice) -> Service | Sequence[Service]:
        return self.services[index]

    def __len__(self) -> int:
        return len(self.services)

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)

    def entry(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service {name!r} in the catalogue")

    def dependencies(self, service: Service) -> tuple[str, ...]:
        """The services it calls: the token issuer first (for its keys), then its own calls."""
        issuer = self.issuer.service
        first = (issuer,) if service.verifies_tokens and service.name != issuer else ()
        return first + tuple(c for c in service.calls if c not in first)

    def domain_services(self) -> list[Service]:
        """The services behind the gateway whose own RPCs it routes (not a service that serves
        web pages only)."""
        return [s for s in self.services if not s.gateway and s.serves]

    def web_services(self) -> list[Service]:
        """The services whose web pages the gateway serves."""
        return [s for s in self.services if s.web]

    def graph_services(self) -> list[Service]:
        """The services whose subgraphs the GraphQL gateway composes."""
        return [s for s in self.services if s.graph]

    def serving(self, full_name: str) -> list[Service]:
        """The services the gateway routes the gRPC API `full_name` to (e.g.
        "order.v1.OrderService": the order service; the operator API: every service with a
        runtime)."""
        found = [service for service in self.services if full_name in service.routed_apis]
        if not found:
            raise KeyError(f"no service in the catalogue serves {full_name}: add it to its entry")
        return found

    def pool_size_within(self, connections: int, instances: int) -> int:
        """The PostgreSQL pool (STORE_POOL_SIZE) each instance may have when every store-backed
        service runs `instances` of them on one server that allows `connections`: an instance
        opens its pool and, while its relay holds the outbox lease, one connection to LISTEN."""
        stored = sum(Need.STORE in service.needs for service in self.services)
        pool = connections // (stored * instances) - 1
        if pool < 1:
            raise ValueError(
                f"{instances} instances of each of {stored} store-backed services do not fit in "
                f"{connections} PostgreSQL connections: raise max_connections or use a pooler"
            )
        return pool

    def in_start_order(self, services: Sequence[Service] | None = None) -> list[Service]:
        """`services` (all by default) with each after those it calls (its dependencies answer
        when it starts)."""
        ordered: dict[str, Service] = {}

        def visit(service: Service, path: tuple[str, ...]) -> None:
            if service.name in path:
                raise ValueError(f"services call each other in a cycle: {' -> '.join(path)}")
            for callee in self.dependencies(service):
                visit(self.entry(callee), (*path, service.name))
            ordered.setdefault(service.name, service)

        chosen = self.services if services is None else services
        for service in chosen:
            visit(service, ())
        wanted = {s.name for s in chosen}
        return [s for s in ordered.values() if s.name in wanted]


def load(reference: str) -> Catalogue:
    """A project's catalogue by its place, "module:attribute" (the example's:
    "services.catalogue:CATALOGUE"), imported."""
    module, _, attribute = reference.partition(":")
    found = getattr(importlib.import_module(module), attribute or "CATALOGUE", None)
    if not isinstance(found, Catalogue):
        raise ValueError(f"{reference} is not a Catalogue: name one as module:attribute")
    return found
