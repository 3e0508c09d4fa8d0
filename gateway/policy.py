"""The edge policy every gateway enforces, and how it travels from the auth service to Envoy.

The policy is two facts, decided by the auth service (`services.auth`) ahead of any request:
- the key set that verifies access tokens (the token issuer's published keys);
- the sessions revoked before their last access token expires, each with that expiry.

`PolicyFeed` keeps them in Redis, where every gateway finds them: the key set as JSON, the
revoked sessions as a sorted set scored by expiry, a version bumped by every change and a
pub/sub notice of it. `PolicyFiles` renders them into the two ECDS files a gateway's Envoy
watches (jwt_authn's providers with the key set inline; an RBAC filter denying the revoked
sessions through a hash lookup, see `gateway.config`), binary protobuf, each replaced by an
atomic rename so Envoy applies it without a restart. `PolicyWatcher`, run by each gateway's agent
(`gateway.agent`), rewrites them on each notice, and re-reads the version every `refresh_s`
in case a notice was missed.

What holds when parts fail:
- the auth service down: Redis and the files keep the policy; Envoy goes on enforcing it;
- Redis down: the files keep the last policy rendered;
- an agent (re)started: existing files stay until a policy is read; a gateway that never saw
  a key set gets a placeholder key no token verifies with (fail closed: 401), never an empty
  set (Envoy refuses one);
- an expired revocation is dropped at the next render: its tokens have expired anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoy.config.core.v3 import extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message
from jwt.algorithms import OKPAlgorithm
from redis.exceptions import RedisError

from chassis.logging import get_logger

__all__ = ["EdgePolicy", "PolicyFeed", "PolicyFiles", "PolicyWatcher"]

log = get_logger(__name__)

PREFIX = "ordermesh:edge"
KEYS = f"{PREFIX}:jwks"
REVOKED = f"{PREFIX}:revoked-sessions"
VERSION = f"{PREFIX}:version"
CHANNEL = f"{PREFIX}:changed"


@dataclass(frozen=True)
class EdgePolicy:
    version: int
    # The key set (RFC 7517: {"keys": [...]}); None until the auth service published one.
    jwks: Mapping[str, Any] | None
    # Revoked session id -> when its last access token expires (Unix seconds).
    revoked: Mapping[str, float] = field(default_factory=dict)


class PolicyFeed:
    """The policy in Redis: written by the auth service, read by every gateway's agent."""

    def __init__(self, redis: aioredis.Redis, *, clock: Callable[[], float] = time.time):
        self._redis = redis
        self._clock = clock

    async def publish_keys(self, jwks: Mapping[str, Any]) -> bool:
        """Makes `jwks` the key set; False if it already was (nothing changes then)."""
        text = json.dumps(jwks, sort_keys=True)
        current = await self._redis.get(KEYS)
        if current is not None and _text(current) == text:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(KEYS, text)
            pipe.incr(VERSION)
            _, version = await pipe.execute()
        await self._redis.publish(CHANNEL, version)
        return True

    async def revoke(self, session_id: str, until: float) -> None:
        """Refuses `session_id` until `until` (a later expiry already recorded is kept)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(REVOKED, {session_id: until}, gt=True)
            pipe.incr(VERSION)
            _, version = await pipe.execute()
        await self._redis.publish(CHANNEL, version)

    async def forget_expired(self) -> int:
        """Drops the revocations whose tokens have all expired; how many."""
        removed = int(await self._redis.zremrangebyscore(REVOKED, "-inf", self._clock()))
        if removed:
            await self._redis.publish(CHANNEL, await self._redis.incr(VERSION))
        return removed

    async def version(self) -> int:
        return int(await self._redis.get(VERSION) or 0)

    async def read(self) -> EdgePolicy:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(VERSION)
            pipe.get(KEYS)
            pipe.zrange(REVOKED, self._clock(), "+inf", byscore=True, withscores=True)
            version, jwks, revoked = await pipe.execute()
        return EdgePolicy(
            version=int(version or 0),
            jwks=json.loads(jwks) if jwks else None,
            revoked={_text(session): float(until) for session, until in revoked},
        )

    async def wait_for_notice(self, notice: asyncio.Event, *, poll_s: float) -> None:
        """Sets `notice` at every change announced, until cancelled or Redis fails."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=poll_s)
                if message is not None:  # a change, or the subscription (read what came before)
                    notice.set()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def placeholder_jwks() -> dict[str, Any]:
    """A key set no token verifies with: a fresh public key whose private key is discarded."""
    jwk = json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key()))
    jwk.update(kid="no-key-set-yet", use="sig", alg="EdDSA")
    return {"keys": [jwk]}


Render = Callable[[Mapping[str, Any]], Message]


class PolicyFiles:
    """The ECDS files of one gateway (discovery responses in binary protobuf), each replaced
    atomically, written only when what it says changed.

    `render_jwt(jwks)` and `render_revocations(revoked)` give each filter's config
    (`gateway.config.jwt_authn_config` and `revocations_config`)."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        *,
        render_jwt: Render,
        render_revocations: Render,
    ):
        self._paths = dict(paths)
        self._render = {"jwt": render_jwt, "revocations": render_revocations}
        # What each file was last written from.
        self._written: dict[str, dict[str, Any]] = {}
        for path in self._paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:
        """Before Envoy starts: each missing file written from an empty policy."""
        if not self._paths["jwt"].exists():
            self._write("jwt", placeholder_jwks())
        if not self._paths["revocations"].exists():
            self._write("revocations", {})

    def write(self, policy: EdgePolicy) -> None:
        if policy.jwks is not None:
            self._write("jwt", policy.jwks)
        self._write("revocations", policy.revoked)

    def _write(self, which: str, source: Mapping[str, Any]) -> None:
        if self._written.get(which) == source:
            return
        path = self._paths[which]
        resource = extension_pb2.TypedExtensionConfig(name=path.stem)
        resource.typed_config.Pack(self._render[which](source))
        response = discovery_pb2.DiscoveryResponse(version_info=str(time.time_ns()))
        response.resources.add().Pack(resource)
        staged = path.with_name(f".{path.name}.tmp")
        staged.write_bytes(response.SerializeToString())
        os.replace(staged, path)
        self._written[which] = dict(source)
        entries = len(source.get("keys", ())) if which == "jwt" else len(source)
        log.info("edge policy written", filter=which, entries=entries)


class PolicyWatcher:
    """Follows the feed: `on_change(policy)` with the whole policy at start and after each
    change (a gateway's `PolicyFiles.write`; the auth service's own copy)."""

    def __init__(
        self,
        feed: PolicyFeed,
        on_change: Callable[[EdgePolicy], None],
        *,
        refresh_s: float = 1.0,
        min_interval_s: float = 0.1,
        sweep_s: float = 60.0,
    ):
        self._feed = feed
        self._on_change = on_change
        self._refresh_s = refresh_s
        # Between two reads: a burst of logouts becomes one file, not one per logout (Envoy
        # takes 60-80 ms of its main thread to apply 10,000 revocations; docs/performance.md).
        self._min_interval_s = min_interval_s
        # How often the policy is read even without a change, to drop expired revocations.
        self._sweep_s = sweep_s
        self._notice = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        written_version = -1
        swept_at = time.monotonic()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._refresh_s):
                        await self._notice.wait()
                self._notice.clear()
                try:
                    sweep = time.monotonic() - swept_at >= self._sweep_s
                    if sweep or await self._feed.version() != written_version:
                        policy = await self._feed.read()
                        self._on_change(policy)
                        written_version, swept_at = policy.version, time.monotonic()
                except (RedisError, OSError) as exc:
                    log.warning("edge policy unreadable; the last one stays", error=str(exc))
                except Exception:  # a failure to apply it must not end the watch
                    log.exception("edge policy not applied; trying again at the next change")
                await asyncio.sleep(self._min_interval_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        while True:
            try:
                await self._feed.wait_for_notice(self._notice, poll_s=self._refresh_s)
            except (RedisError, OSError) as exc:
                log.warning("edge policy notices lost; reading every refresh", error=str(exc))
            await asyncio.sleep(self._refresh_s)
