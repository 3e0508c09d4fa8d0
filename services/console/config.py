"""The operator console's settings, from the environment (see ordermesh.config)."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from ordermesh.config import ConfigError, ServiceSettings
from ordermesh.roles import GatewayClientSettings, MonitorSettings
from pydantic import Field, model_validator


class ConsoleSettings(ServiceSettings, GatewayClientSettings, MonitorSettings):
    service_name: str = "console"
    # Required: the sessions live there, and the registry the live system is read from.
    redis_url: str = Field(min_length=1)
    # Required: its pages answer only the gateway's calls, which carry this secret (without it
    # the port would be a door around the gateway's limits).
    internal_token: str = Field(min_length=16)
    # What the access tokens must say (ordermesh.tokens), as every service checks them.
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"
    # A session ends after this long without use (and with its refresh token, or at sign-out).
    console_session_ttl_s: float = Field(default=1800.0, gt=0)
    # The console's origin as browsers name it (https://host:port); empty: the scheme the
    # gateway saw (X-Forwarded-Proto) and the Host the browser sent.
    console_origin: str = ""
    # The deadline of each call the console makes (gateway, Prometheus).
    console_call_timeout_s: float = Field(default=5.0, gt=0)
    # How often the live system's page refreshes itself; a read is shared by every page that
    # asks within half of it.
    console_refresh_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _usable(self) -> Self:
        for variable, url in (
            ("PROMETHEUS_URL", self.prometheus_url),
            ("ALERTMANAGER_URL", self.alertmanager_url),
            ("JAEGER_URL", self.jaeger_url),
            ("CONSOLE_ORIGIN", self.console_origin),
        ):
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{variable}={url!r} is not an http(s):// URL")
        return self
