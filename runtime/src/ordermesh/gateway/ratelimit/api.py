"""Envoy's rate-limit check: fixed-window counters in Redis, shared by every gateway.

For each descriptor of a request that falls under a limit (`ordermesh.gateway.ratelimit.limits`),
one counter per value and window is incremented in Redis (INCRBY + PEXPIRE in one round trip); a
request is OVER_LIMIT when any of its counters passed its limit, and the answer then carries
`retry-after` (seconds until the window ends). Envoy answers such a request 429 itself.

If Redis cannot be reached the check fails (UNAVAILABLE): the gateway lets the request through
(its rate-limit filter fails open) and its local limit still applies; the outage is logged once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import grpc
import redis.asyncio as aioredis
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from redis.exceptions import RedisError

from ordermesh.gateway.ratelimit.limits import Limit, Limits
from ordermesh.grpc import Service
from ordermesh.logging import get_logger

__all__ = ["UNIT", "RateLimiter", "service"]

log = get_logger(__name__)

Response = rls_pb2.RateLimitResponse
UNIT = {1: Response.RateLimit.SECOND, 60: Response.RateLimit.MINUTE, 3600: Response.RateLimit.HOUR}


class RateLimiter(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    def __init__(
        self, limits: Limits, redis: aioredis.Redis, *, clock: Callable[[], float] = time.time
    ):
        self._limits = limits
        self._redis = redis
        self._clock = clock
        self._reachable = True

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        hits = request.hits_addend or 1
        now = self._clock()
        counted: list[tuple[Limit, str]] = []
        for descriptor in request.descriptors:
            found = self._limits.of([(e.key, e.value) for e in descriptor.entries])
            if found is not None:
                limit, value = found
                window = math.floor(now / limit.unit_s)
                counted.append((limit, f"{request.domain}:{limit.name}:{value}:{window}"))
        statuses = [Response.DescriptorStatus(code=Response.OK) for _ in request.descriptors]
        if not counted:
            return Response(overall_code=Response.OK, statuses=statuses)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for limit, key in counted:
                    pipe.incrby(f"ordermesh:ratelimit:{key}", hits)
                    pipe.pexpire(f"ordermesh:ratelimit:{key}", limit.unit_s * 1000 + 1000)
                results = await pipe.execute()
        except RedisError as exc:
            if self._reachable:
                log.warning("counters unreachable; the gateway fails open", error=str(exc))
            self._reachable = False
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"rate-limit counters: {exc}")
        self._reachable = True
        over = []
        for (limit, _), count in zip(counted, results[::2], strict=True):
            if int(count) > limit.requests:
                over.append(limit.unit_s - (now % limit.unit_s))
        overall = Response.OVER_LIMIT if over else Response.OK
        headers = (
            [base_pb2.HeaderValue(key="retry-after", value=str(math.ceil(max(over))))]
            if over
            else []
        )
        return Response(overall_code=overall, statuses=statuses, response_headers_to_add=headers)


def service(limiter: RateLimiter) -> Service:
    return Service(
        descriptor=rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
        servicer=limiter,
        add_to_server=rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
        governed=False,
    )
