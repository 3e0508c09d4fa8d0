"""Wiring of the storefront: `python -m services.storefront`.

It serves like every service (`ordermesh.grpc.serve`: registered in the registry, gRPC health,
/metrics), and its pages at /shop on the same HTTP port as /metrics, where the gateway routes
/shop (and sends its root, `/`). It keeps no store and speaks on no backbone, so it has no
runtime (ordermesh.defaults); what it depends on to answer is Redis (its sessions) and the
gateway (every page's data).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from ordermesh.defaults import configured
from ordermesh.grpc import serve
from ordermesh.health import Readiness, redis_probe
from ordermesh.web import assets
from ordermesh.web.sessions import Sessions

from services.storefront import web
from services.storefront.api import Api
from services.storefront.config import StorefrontSettings
from services.storefront.shop import Storefront


async def main() -> None:
    settings = configured(StorefrontSettings)
    ca = (
        await asyncio.to_thread(Path(settings.gateway_ca).read_bytes)
        if settings.gateway_ca
        else None
    )
    static = await asyncio.to_thread(assets.load, web.STATIC, web.PREFIX)
    redis = aioredis.from_url(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
    )
    http = aiohttp.ClientSession()
    shop = Storefront(
        Api(
            settings.gateway_url,
            ca=ca,
            http=http,
            timeout_s=settings.storefront_call_timeout_s,
            internal_token=settings.internal_token,
        ),
        Sessions(redis, ttl_s=settings.storefront_session_ttl_s, namespace="ordermesh:storefront"),
    )
    try:
        await serve(
            settings,
            [],
            readiness=Readiness({"redis": redis_probe(redis)}),
            apps={
                web.PREFIX: web.application(
                    shop,
                    assets=static,
                    origin=settings.storefront_origin,
                    refresh_s=settings.storefront_refresh_s,
                )
            },
        )
    finally:
        await http.close()
        await redis.aclose()
