"""Settings that give a service a role the deployments read, as `BackboneSettings` gives it the
broker and a store: a service whose settings class has one of these has that role, and the
catalogue says so once (`Service.notifies`, `Service.signs_policy`) for every target that
hands it its variables (ordermesh.deploy.environment).

- `NotifierSettings`: it sends through the notification providers (SMTP, SMS, push), whose
  addresses and credentials it is given;
- `PolicySignerSettings`: it signs the edge policy (ordermesh.policy) with the private key that
  no other process holds;
- `GatewayClientSettings`: it calls the system through its gateway, as any client does (the
  console, with its signed-in admin's token), and is told which services serve which
  operator API;
- `MonitorSettings`: it reads what the system publishes about itself: Prometheus, Alertmanager,
  a trace viewer, the processes' log files.
"""

import os
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from ordermesh.config import ConfigError, Settings

__all__ = [
    "DEFAULT_CATALOGUE",
    "CatalogueReaderSettings",
    "GatewayClientSettings",
    "MonitorSettings",
    "NotifierSettings",
    "PolicySignerSettings",
]


# Where a process that reads a project's catalogue finds it unless told: the layout the
# runtime's commands assume (`services/catalogue.py`, as `python -m ordermesh new-service` writes).
DEFAULT_CATALOGUE = "services.catalogue:CATALOGUE"


class CatalogueReaderSettings(Settings):
    """A process that reads the project's catalogue (the gateway's agent and auth service,
    Prometheus's targets): where it imports it from, `module:attribute` (CATALOGUE;
    ordermesh.catalogue.load). The deployments give it (ordermesh.deploy.environment)."""

    catalogue: str = DEFAULT_CATALOGUE


class NotifierSettings(Settings):
    """The providers a notifying service sends through."""

    smtp_host: str
    smtp_port: int = Field(ge=1, le=65535)
    smtp_sender: str = "ordermesh <no-reply@ordermesh.invalid>"
    smtp_username: str = ""
    smtp_password: str = ""
    # HTTP provider APIs for SMS and push; a channel without a URL is not set up.
    sms_provider_url: str = ""
    sms_provider_token: str = ""
    push_provider_url: str = ""
    push_provider_token: str = ""


class PolicySignerSettings(Settings):
    """The edge policy's signer (the auth service)."""

    # The private key the edge policy is signed with; gateways and services hold its public
    # half (EDGE_POLICY_VERIFY_KEY). Raw Ed25519, base64url (ordermesh.policy.new_policy_keys).
    edge_policy_signing_key: str = Field(min_length=1)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


class GatewayClientSettings(Settings):
    """How a process reaches the system through its gateway."""

    # http(s)://host:port of the gateway (gRPC and HTTPS on the same port).
    gateway_url: str = Field(min_length=1)
    # The PEM file of the CA that issued the gateway's certificate; empty: the system's trusted
    # authorities.
    gateway_ca: str = ""
    # The services that serve ops.v1.OperatorService, and those that serve ops.v1.SagaService,
    # comma-separated, as the gateway routes them (the catalogue decides:
    # ordermesh.deploy.environment).
    operator_api_services: str = ""
    saga_api_services: str = ""

    @model_validator(mode="after")
    def _gateway_usable(self) -> Self:
        parts = urlsplit(self.gateway_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"GATEWAY_URL={self.gateway_url!r} is not http(s)://host[:port]")
        if self.gateway_ca and not os.path.isfile(self.gateway_ca):
            raise ConfigError(f"GATEWAY_CA={self.gateway_ca!r}: no such file")
        return self

    @property
    def operator_services(self) -> tuple[str, ...]:
        return _names(self.operator_api_services)

    @property
    def saga_services(self) -> tuple[str, ...]:
        return _names(self.saga_api_services)


class MonitorSettings(Settings):
    """Where a process reads what the system publishes about itself; each is optional."""

    # Prometheus's HTTP API.
    prometheus_url: str = ""
    # Alertmanager's API v2; empty: Prometheus's own alerts.
    alertmanager_url: str = ""
    # A trace viewer (Jaeger's UI): {JAEGER_URL}/trace/<trace id>.
    jaeger_url: str = ""
    # The run directory the processes write their JSON log lines to (`make up`: .build/run).
    log_dir: str = ""
