"""Settings: read once from the environment at start-up, frozen, failing fast with the variable.

A service declares its settings as a subclass of `Settings`; each field is read from the
environment variable of the same name in upper case (`rabbitmq_url` <- RABBITMQ_URL). `load()`
builds them once, in `main()`, and turns every problem into one `ConfigError` that names each
variable and the value it had, so a misconfigured process stops before it serves anything.

    class OrderSettings(ServiceSettings):
        rabbitmq_url: str            # required: no default
        saga_step_timeout_s: float = 30.0

    settings = load(OrderSettings)
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Self, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "WILDCARDS",
    "ConfigError",
    "FaultSwitchSettings",
    "ServiceSettings",
    "Settings",
    "address_of",
    "address_variable",
    "load",
]


class ConfigError(Exception):
    """The environment does not describe a runnable process; the message says which variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)


def _default_instance_id() -> str:
    # Containers on one host network share its host name and may share a pid (1).
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def address_variable(service: str) -> str:
    """The variable that gives the address (host:port) of `service` while the registry does
    not answer: USER_SERVICE_ADDR for the service "user"."""
    return f"{service.upper()}_SERVICE_ADDR"


def address_of(service: str) -> str:
    """The address of `service` from its variable (`address_variable`), which must be set."""
    variable = address_variable(service)
    address = os.environ.get(variable, "")
    if not address:
        raise ConfigError(
            f"{variable} is not set: where the {service} service answers while the registry "
            "does not"
        )
    return address


# Hosts that mean "bind every interface".
WILDCARDS = ("0.0.0.0", "::", "[::]", "")


class FaultSwitchSettings(Settings):
    """The fault switches' file (ordermesh.switches), and the guard a production deployment sets
    so that none can be turned on there: with FAULT_SWITCHES_FORBIDDEN true, a process given a
    FAULT_FLAGS_FILE refuses to start."""

    # The flagd flag file of the fault switches, followed while running; empty: every switch
    # off and nothing read. Development and tests only: never in production.
    fault_flags_file: str = ""
    fault_switches_forbidden: bool = False

    @model_validator(mode="after")
    def _no_switches_where_forbidden(self) -> Self:
        if self.fault_switches_forbidden and self.fault_flags_file:
            raise ConfigError(
                f"FAULT_FLAGS_FILE={self.fault_flags_file!r} is set where fault switches are "
                "forbidden (FAULT_SWITCHES_FORBIDDEN, set by the production overlay): unset it"
            )
        return self


class ServiceSettings(FaultSwitchSettings):
    """What every service process needs, whatever it does."""

    service_name: str
    # Unique per process; shows in logs and in the registry.
    instance_id: str = Field(default_factory=_default_instance_id)
    grpc_host: str = "127.0.0.1"
    # 0 lets the operating system choose a free port (tests, several instances on one host).
    grpc_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    # How long in-flight RPCs may finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # After SIGTERM, how long a registered instance keeps taking calls once it is DRAINING in
    # the registry, so that gateways and clients learn it before it refuses them.
    drain_delay_s: float = Field(default=0.5, ge=0)
    # How often readiness probes run; health follows within this delay.
    health_interval_s: float = Field(default=2.0, gt=0)
    # The registry (ordermesh.registry): empty means this instance is not registered.
    redis_url: str = ""
    # The address others reach this instance at (default: grpc_host, or for a wildcard bind
    # such as 0.0.0.0 in a container, the address its host name resolves to).
    advertised_host: str = ""
    # Where the bound port is written once serving, for a health probe in the same container
    # when the port is chosen at start (`python -m ordermesh.probe`).
    port_file: str = ""
    service_version: str = "0.1.0"
    # Where /metrics is served (on grpc_host); 0 lets the operating system choose.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # The secret of the system's internal hops (ordermesh.identity.INTERNAL_HEADER): required on
    # the calls to this instance's HTTP routes (its GraphQL subgraph, its web pages). Empty: a
    # subgraph takes any caller (the console's settings require it).
    internal_token: str = ""
    # A silent instance drops out of the registry after registry_ttl_s; heartbeats renew it.
    registry_ttl_s: float = Field(default=6.0, gt=0)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    # Mutual TLS on gRPC (ordermesh.tls), PEM files: this instance's certificate (naming its
    # service), its key, and the CA that signs every service's. All three or none (plaintext).
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    grpc_tls_ca: str = ""

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> Self:
        # A ConfigError, not a ValueError: pydantic would print every setting with it.
        files = {
            _variable(type(self), field): getattr(self, field)
            for field in ("grpc_tls_cert", "grpc_tls_key", "grpc_tls_ca")
        }
        missing = [variable for variable, path in files.items() if not path]
        if missing and len(missing) < len(files):
            raise ConfigError(
                f"{' and '.join(missing)} not set: mutual TLS needs "
                f"{', '.join(files)} together (or none of them, for plaintext)"
            )
        absent = [
            f"{variable}={path!r}"
            for variable, path in files.items()
            if path and not os.path.isfile(path)
        ]
        if absent:
            raise ConfigError(f"{', '.join(absent)}: no such file")
        return self


S = TypeVar("S", bound=Settings)


def _variable(cls: type[Settings], field: str) -> str:
    prefix = cls.model_config.get("env_prefix") or ""
    return f"{prefix}{field}".upper()


def load(cls: type[S]) -> S:
    """Reads `cls` from the environment, or raises ConfigError naming every bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = _variable(cls, str(error["loc"][0])) if error["loc"] else cls.__name__
            if error["type"] == "missing":
                problems.append(f"{variable} is required but not set")
            else:
                problems.append(f"{variable}={error['input']!r} is invalid: {error['msg']}")
        raise ConfigError("; ".join(problems)) from None
