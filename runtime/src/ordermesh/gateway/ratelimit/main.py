"""Wiring of the rate-limit service: `python -m ordermesh.gateway.ratelimit`."""

from __future__ import annotations

import redis.asyncio as aioredis

from ordermesh.config import ConfigError
from ordermesh.defaults import configured
from ordermesh.gateway.ratelimit import api
from ordermesh.gateway.ratelimit.config import RateLimitSettings
from ordermesh.gateway.ratelimit.limits import Limits, parse
from ordermesh.gateway.ratelimits import GLOBAL_LIMITS
from ordermesh.grpc import serve
from ordermesh.health import Readiness, redis_probe

__all__ = ["main"]


async def main() -> None:
    # Only the defaults' first steps: the service keeps no store and speaks on no backbone, so
    # it has no runtime (ordermesh.defaults); its counters' Redis is all it depends on.
    settings = configured(RateLimitSettings)
    url = settings.rate_limit_redis_url or settings.redis_url
    if not url:
        raise ConfigError("RATE_LIMIT_REDIS_URL or REDIS_URL is required: the counters live there")
    limits = Limits(
        [parse(name, getattr(settings, field)) for name, field in GLOBAL_LIMITS.items()]
    )
    redis = aioredis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        # Not ready without its counters: health says so, while the gateway fails open.
        await serve(
            settings,
            [api.service(api.RateLimiter(limits, redis))],
            readiness=Readiness({"redis": redis_probe(redis)}),
        )
    finally:
        await redis.aclose()
