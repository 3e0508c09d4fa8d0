"""The storefront's settings, from the environment (see ordermesh.config)."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from ordermesh.config import ConfigError, ServiceSettings
from ordermesh.roles import GatewayClientSettings
from pydantic import Field, model_validator


class StorefrontSettings(ServiceSettings, GatewayClientSettings):
    service_name: str = "storefront"
    # Required: the customers' sessions live there.
    redis_url: str = Field(min_length=1)
    # Required: its pages answer only the gateway's calls, which carry this secret (without it
    # the port would be a door around the gateway's limits).
    internal_token: str = Field(min_length=16)
    # A session ends after this long without use (and with its refresh token, or at sign-out).
    storefront_session_ttl_s: float = Field(default=3600.0, gt=0)
    # The storefront's origin as browsers name it (https://host:port); empty: the scheme the
    # gateway saw (X-Forwarded-Proto) and the Host the browser sent.
    storefront_origin: str = ""
    # The deadline of each call the storefront makes to the gateway.
    storefront_call_timeout_s: float = Field(default=5.0, gt=0)
    # How often an order's page asks again while its saga decides it.
    storefront_refresh_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _usable(self) -> Self:
        origin = self.storefront_origin
        if origin and urlsplit(origin).scheme not in ("http", "https"):
            raise ConfigError(f"STOREFRONT_ORIGIN={origin!r} is not an http(s):// URL")
        return self
