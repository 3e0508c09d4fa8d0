"""Sessions ended before their access tokens expire, which the auth service must refuse.

Each auth instance keeps them in memory (a check never waits on the network) and learns of new
ones from SessionRevoked, which every instance receives (a fanout exchange, a queue per
instance). Each one is also written to Redis until its last token expires, so an instance that
starts later loads what was revoked before it started. If Redis is unreachable at start, the
instance begins with what the events bring, and says so.
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from user.v1 import events_pb2 as user_events

from chassis.consumer import Handler
from chassis.events import Envelope, Message
from chassis.logging import get_logger
from chassis.store import Transaction
from chassis.topology import Subscription

log = get_logger(__name__)

SESSIONS = Subscription(
    service="auth",
    purpose="sessions",
    types=[user_events.SessionRevoked],
    per_instance=True,
    retry_delays_s=(),
)
PREFIX = "ordermesh:revoked-session:"


class Revocations:
    def __init__(self, redis: aioredis.Redis | None):
        self._redis = redis
        self._until: dict[str, float] = {}

    def revoked(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        if until is None:
            return False
        if until < time.time():
            del self._until[session_id]
            return False
        return True

    async def load(self) -> None:
        """Reads the revocations recorded in Redis (those of sessions with live tokens)."""
        if self._redis is None:
            return
        try:
            keys = [str(k) async for k in self._redis.scan_iter(match=f"{PREFIX}*", count=500)]
            untils = await self._redis.mget(keys) if keys else []
            for key, until in zip(keys, untils, strict=True):
                if until is not None:
                    self._until[key.removeprefix(PREFIX)] = float(until)
        except RedisError as exc:
            log.warning("could not load earlier revocations; only new ones apply", error=str(exc))
        else:
            log.info("revocations loaded", count=len(self._until))

    async def record(self, session_id: str, until: float) -> None:
        self._until[session_id] = max(until, self._until.get(session_id, 0.0))
        ttl_ms = int((until - time.time()) * 1000)
        if self._redis is None or ttl_ms <= 0:
            return
        try:
            await self._redis.set(f"{PREFIX}{session_id}", str(until), px=ttl_ms)
        except RedisError as exc:
            log.warning("revocation not written to Redis", session_id=session_id, error=str(exc))

    def handlers(self) -> dict[type[Message], Handler]:
        async def revoked(event: user_events.SessionRevoked, _: Envelope, __: Transaction) -> None:
            await self.record(event.session_id, event.expire_time.ToSeconds())

        return {user_events.SessionRevoked: cast(Handler, revoked)}
