"""One call that gives a service its defaults, as eShop's `AddServiceDefaults()` does: a
service's `main()` is `run_service(SettingsClass, wire, collections=..., issuer=...)`, and `wire`
says only what is the service's own.

`run_service` does, in this order:
- `configured`: loads the settings (failing fast with the variable's name), then sets up the
  JSON logs and, if the environment asks for it, the trace exporter;
- `Runtime.open`: the store (with the service's collections), the broker, the outbox relay and
  the runtime's own upkeep (ordermesh.runtime);
- `wire(runtime, settings)`: the service's use cases over `runtime.store`, its consumers
  (`runtime.consume`), its background work (`runtime.background`) and what it closes
  (`runtime.on_close`); it returns what it serves (`Served`);
- the verifier of callers' tokens: the service's own if it gives one, else, for
  `AuthenticatedSettings`, one of the keys `issuer` publishes (the project's token issuer,
  ordermesh.tokens.KeyIssuer), loaded before the first call is served;
- `ordermesh.grpc.serve` of its APIs, the operator API over its messages
  (ordermesh.operator_api) and its subgraph, with the runtime's readiness, notes and
  metrics, until SIGTERM or SIGINT; then the runtime closes in its order.

A service without a store or a broker (the gateway's rate-limit service) has no runtime: it
takes the first step alone (`configured`) and serves by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ordermesh import config, operator_api, telemetry
from ordermesh import logging as runtime_logging
from ordermesh.config import ServiceSettings
from ordermesh.grpc import Service, serve
from ordermesh.identity import Authenticator
from ordermesh.runtime import AuthenticatedSettings, BackboneSettings, Runtime
from ordermesh.store import Collection
from ordermesh.tokens import KeyIssuer

if TYPE_CHECKING:  # strawberry costs 0.18 s at start: imported only by the services with a subgraph
    from ordermesh.graphql import Subgraph

__all__ = ["Served", "configured", "run_service"]

AnySettings = TypeVar("AnySettings", bound=ServiceSettings)
Settings = TypeVar("Settings", bound=BackboneSettings)


@dataclass(frozen=True)
class Served:
    """What a service serves, as its wiring decides."""

    apis: Sequence[Service]
    # Its GraphQL subgraph (ordermesh.graphql), at /graphql beside /metrics.
    subgraph: Subgraph | None = None
    # Who verifies its callers' access tokens when not a verifier of the issuer's keys: the
    # issuer's own (it holds the keys), or the one a service made already for its own use.
    authenticator: Authenticator | None = None


def configured(settings_class: type[AnySettings]) -> AnySettings:
    """The settings from the environment, with the process's logs and traces set up for them."""
    settings = config.load(settings_class)
    runtime_logging.configure(
        service=settings.service_name, instance=settings.instance_id, level=settings.log_level
    )
    telemetry.configure(service=settings.service_name, instance=settings.instance_id)
    return settings


async def run_service(
    settings_class: type[Settings],
    wire: Callable[[Runtime, Settings], Awaitable[Served]],
    *,
    collections: Sequence[Collection] = (),
    issuer: KeyIssuer | None = None,
) -> None:
    """Runs a service until SIGTERM or SIGINT; see the module doc. `issuer`: whose keys verify
    its callers' tokens, for `AuthenticatedSettings` whose wiring gives no verifier."""
    settings = configured(settings_class)
    if issuer is not None and isinstance(settings, AuthenticatedSettings):
        config.address_of(issuer.service)  # fails fast, before the runtime opens, if unset
    async with Runtime.open(settings, collections=collections) as runtime:
        served = await wire(runtime, settings)
        authenticator = served.authenticator
        if authenticator is None and isinstance(settings, AuthenticatedSettings):
            if issuer is None:
                raise TypeError(f"{settings_class.__name__} verifies tokens: name its issuer")
            authenticator = await runtime.token_verifier(issuer)
        await serve(
            settings,
            [*served.apis, operator_api.service(runtime.operations, runtime.switches)],
            readiness=runtime.readiness(),
            authenticator=authenticator,
            notes=runtime.notes,
            metrics=runtime.metrics,
            subgraph=served.subgraph,
            switches=runtime.switches,
        )
