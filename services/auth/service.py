"""The edge policy the auth service decides: which keys verify tokens, which sessions are ended.

Both are published to every gateway through `gateway.policy.PolicyFeed` (Redis), where each
gateway's agent turns them into Envoy configuration; the auth service is then on no request's
path, except the RPCs whose contract asks for its check (`api.py`), which use the same facts:
- `publish_keys()`: the token issuer's key set (its EdDSA keys that name a `kid`), fetched from
  the issuer and published when it changed, every `keys_refresh_s`. The issuer publishes a new
  key before it signs with it (services.user.keys), longer ahead than this interval, so a
  gateway knows every key before the first token it signs arrives;
- `revoke()`: a session ended before its access tokens expire, refused until the last of them
  does (SessionRevoked, `consumers.py`). A policy store that cannot be written is
  Unavailable: the event waits in its queue until Redis is back, and nothing is lost;
- `revoked()`: this instance's copy of the revoked sessions, kept in step with the feed
  (`follow()`), for the per-call check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from chassis.errors import Unavailable
from chassis.logging import get_logger
from chassis.tokens import ALGORITHMS, JwksSource
from gateway.policy import EdgePolicy, PolicyFeed

__all__ = ["EdgePolicyKeeper"]

log = get_logger(__name__)


class EdgePolicyKeeper:
    def __init__(
        self,
        feed: PolicyFeed,
        keys: JwksSource,
        *,
        keys_refresh_s: float,
        clock: Callable[[], float] = time.time,
    ):
        self._feed = feed
        self._keys = keys
        self._keys_refresh_s = keys_refresh_s
        self._clock = clock
        self._revoked: dict[str, float] = {}

    def revoked(self, session_id: str) -> bool:
        until = self._revoked.get(session_id)
        return until is not None and until > self._clock()

    def follow(self, policy: EdgePolicy) -> None:
        self._revoked = dict(policy.revoked)

    async def revoke(self, session_id: str, until: float) -> None:
        self._revoked[session_id] = max(until, self._revoked.get(session_id, 0.0))
        try:
            await self._feed.revoke(session_id, until)
        except RedisError as exc:
            raise Unavailable(f"the revocation cannot be published: {exc}") from exc

    async def publish_keys(self) -> None:
        jwks = await self._keys()
        keys = [k for k in jwks.get("keys", ()) if k.get("alg") in ALGORITHMS and k.get("kid")]
        if not keys:
            raise Unavailable("the token issuer publishes no key this system accepts")
        if await self._feed.publish_keys({"keys": _sorted(keys)}):
            log.info("key set published", kids=[k["kid"] for k in keys])

    async def keep_publishing(self) -> None:
        """Publishes the key set every `keys_refresh_s`, and forgets expired revocations."""
        while True:
            try:
                await self.publish_keys()
                await self._feed.forget_expired()
            except Exception as exc:  # noqa: BLE001 - the feed keeps the last set; try again
                log.warning("edge policy not refreshed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._keys_refresh_s)


def _sorted(keys: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """In a stable order, so an unchanged set is recognised as unchanged."""
    return sorted((dict(k) for k in keys), key=lambda k: str(k["kid"]))
