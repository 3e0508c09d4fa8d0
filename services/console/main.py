"""Wiring of the operator console: `python -m services.console`.

It serves like every service (`ordermesh.grpc.serve`: registered in the registry, gRPC health,
/metrics), and its pages at /console on the same HTTP port as /metrics, where the gateway routes
/console. It keeps no store and speaks on no backbone, so it has no runtime
(ordermesh.defaults); what it depends on to answer is Redis (its sessions).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from ordermesh.defaults import configured
from ordermesh.grpc import serve
from ordermesh.health import Readiness, redis_probe
from ordermesh.registry import Registry
from ordermesh.tokens import KeySet, TokenVerifier
from ordermesh.web import assets
from ordermesh.web.sessions import Sessions

from services.console import web
from services.console.clients import Accounts, Alertmanager, Gateway, Operators, Prometheus
from services.console.config import ConsoleSettings
from services.console.live import Alerts
from services.console.pages import PREFIX, STATIC
from services.console.service import Console


async def main() -> None:
    settings = configured(ConsoleSettings)
    ca = (
        await asyncio.to_thread(Path(settings.gateway_ca).read_bytes)
        if settings.gateway_ca
        else None
    )
    static = await asyncio.to_thread(assets.load, STATIC, PREFIX)
    redis = aioredis.from_url(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )
    registry = Registry(settings.redis_url)
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.console_call_timeout_s)
    )
    gateway = Gateway(
        settings.gateway_url, ca=ca, http=http, internal_token=settings.internal_token
    )
    prometheus = (
        Prometheus(settings.prometheus_url, http=http, timeout_s=settings.console_call_timeout_s)
        if settings.prometheus_url
        else None
    )
    alerts: Alerts | None = (
        Alertmanager(
            settings.alertmanager_url, http=http, timeout_s=settings.console_call_timeout_s
        )
        if settings.alertmanager_url
        else prometheus
    )
    console = Console(
        settings,
        sessions=Sessions(
            redis, ttl_s=settings.console_session_ttl_s, namespace="ordermesh:console"
        ),
        accounts=Accounts(gateway, timeout_s=settings.console_call_timeout_s),
        operators=Operators(gateway, timeout_s=settings.console_call_timeout_s),
        # The issuer's keys as the gateway publishes them, fetched when a sign-in first needs
        # them: the console starts before the gateway answers.
        verifier=TokenVerifier(
            KeySet(gateway.jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        ),
        registry=registry,
        prometheus=prometheus,
        alerts=alerts,
    )
    try:
        await serve(
            settings,
            [],
            readiness=Readiness({"redis": redis_probe(redis)}),
            apps={PREFIX: web.application(console, assets=static)},
        )
    finally:
        await gateway.close()
        await http.close()
        await registry.close()
        await redis.aclose()
