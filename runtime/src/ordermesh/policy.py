"""The edge policy: which keys verify access tokens and which sessions are ended, as the auth
service decides it (`ordermesh.gateway.auth`), signed, and as everyone who enforces it reads it
(each gateway's agent, `ordermesh.gateway.agent`; each service that verifies tokens,
`ordermesh.tokens`).

The policy is one JSON document, `EdgePolicy`: a version, the time it was issued, the token
issuer's key set (RFC 7517) and the revoked sessions, each with the expiry of its last access
token. The auth service signs it with its policy key (Ed25519), and it travels sealed: the
64-byte signature, then the document's bytes (`seal`, `unseal`). `PolicyFeed` keeps the latest
sealed document in Redis with a pub/sub notice of each new one; `PolicyFollower` reads it,
verifies it against the public key it was given at deployment (never one read from Redis) and
hands on only a verified policy newer than the one it holds.

What holds when parts fail or lie:
- Redis restarted or flushed (it keeps nothing on disk): followers keep the last verified
  policy (an absent document lifts nothing); the auth service, whose store is the policy's
  durable home, publishes it again within a second of Redis's return;
- anyone with Redis's password: cannot forge a policy (no signature), nor roll one back (an
  older version, or an older issue of the same version, is refused); at most they can delete it
  or hold back the next, which the policy's age shows (`age_s`, exported as
  `ordermesh_edge_policy_age_seconds` and alerted on: the auth service re-issues the policy
  every `REISSUE_S` even when nothing changed);
- a follower started while Redis is unreachable: it holds nothing, and says so (`held` is None;
  a gateway is not ready then).
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from ordermesh.logging import get_logger
from ordermesh.tokens import CLOCK_SKEW_S
from ordermesh.watch import RedisNotices, follow

__all__ = [
    "REISSUE_S",
    "EdgePolicy",
    "ForgedPolicy",
    "PolicyFeed",
    "PolicyFollower",
    "export_metrics",
    "new_policy_keys",
    "seal",
    "signing_key",
    "unseal",
    "verify_key",
]

log = get_logger(__name__)

PREFIX = "ordermesh:edge"
SEALED = f"{PREFIX}:policy"
# "<version> <issued_at>" of the sealed document beside it, so that followers check it for a
# change without reading a document of 10,000 revocations (unsigned: a hint, never believed).
STAMP = f"{PREFIX}:policy-stamp"
CHANNEL = f"{PREFIX}:changed"
SIGNATURE_BYTES = 64
# How often the auth service issues the policy again when nothing changed: its age, which
# every follower exports, is then below this while the auth service can reach Redis.
REISSUE_S = 30.0


class ForgedPolicy(ValueError):
    """A sealed document whose signature does not verify, or that is not a policy."""


@dataclass(frozen=True)
class EdgePolicy:
    version: int
    # When the auth service sealed it (Unix seconds): its age is how stale it may be.
    issued_at: float
    # The key set (RFC 7517: {"keys": [...]}); None until the issuer's keys were fetched.
    jwks: Mapping[str, Any] | None
    # Revoked session id -> when its last access token expires (Unix seconds).
    revoked: Mapping[str, float] = field(default_factory=dict)

    def is_revoked(self, session_id: str, now: float) -> bool:
        """Whether `session_id` is refused at `now`: until its last token expired, and the
        clock skew every verifier tolerates past that (ordermesh.tokens.CLOCK_SKEW_S)."""
        until = self.revoked.get(session_id)
        return until is not None and until + CLOCK_SKEW_S > now

    def newer_than(self, other: EdgePolicy | None) -> bool:
        return other is None or (self.version, self.issued_at) > (other.version, other.issued_at)


def new_policy_keys() -> tuple[str, str]:
    """A fresh key pair: (signing key for the auth service, verify key for everyone else), each
    the raw 32 bytes in unpadded base64url, as deployments hand them out."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _b64(raw), _b64(public)


def signing_key(text: str) -> Ed25519PrivateKey:
    """EDGE_POLICY_SIGNING_KEY's value as a key; ValueError if it is not one."""
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "EDGE_POLICY_SIGNING_KEY"))


def verify_key(text: str) -> Ed25519PublicKey:
    """EDGE_POLICY_VERIFY_KEY's value as a key; ValueError if it is not one."""
    return Ed25519PublicKey.from_public_bytes(_raw(text, "EDGE_POLICY_VERIFY_KEY"))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(text: str, name: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{name} must be 32 bytes in base64url (make one: new_policy_keys())")
    return raw


def seal(policy: EdgePolicy, key: Ed25519PrivateKey) -> bytes:
    document = json.dumps(
        {
            "version": policy.version,
            "issued_at": policy.issued_at,
            "jwks": policy.jwks,
            "revoked": policy.revoked,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return key.sign(document) + document


def unseal(sealed: bytes, key: Ed25519PublicKey) -> EdgePolicy:
    """The policy `sealed` holds if `key` verifies its signature; ForgedPolicy otherwise."""
    signature, document = sealed[:SIGNATURE_BYTES], sealed[SIGNATURE_BYTES:]
    try:
        key.verify(signature, document)
    except InvalidSignature:
        raise ForgedPolicy("the edge policy's signature does not verify") from None
    try:
        fields = json.loads(document)
        return EdgePolicy(
            version=int(fields["version"]),
            issued_at=float(fields["issued_at"]),
            jwks=fields["jwks"],
            revoked={str(s): float(until) for s, until in fields["revoked"].items()},
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # signed, yet not a policy
        raise ForgedPolicy(f"the signed edge policy cannot be read: {exc!r}") from None


class PolicyFeed:
    """The latest sealed policy in Redis: written by the auth service, read by every follower."""

    def __init__(self, redis: aioredis.Redis):
        self._redis = redis

    async def publish(self, policy: EdgePolicy, sealed: bytes) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(SEALED, sealed)
            pipe.set(STAMP, _stamp(policy.version, policy.issued_at))
            pipe.publish(CHANNEL, policy.version)
            await pipe.execute()

    async def stamp(self) -> tuple[int, float] | None:
        """(version, issued_at) of the document in Redis, as its publisher said; None if none."""
        value = await self._redis.get(STAMP)
        if value is None:
            return None
        version, _, issued_at = _text(value).partition(" ")
        try:
            return int(version), float(issued_at)
        except ValueError:
            return None

    async def read(self) -> bytes | None:
        value = await self._redis.get(SEALED)
        if isinstance(value, str):
            raise TypeError("the edge policy is binary: read it with decode_responses=False")
        return value

    def notices(self) -> RedisNotices:
        """Each new policy announced, and each subscription: what was published before it (or
        while Redis was away) is read then."""
        return RedisNotices(self._redis.pubsub, CHANNEL)


def _stamp(version: int, issued_at: float) -> str:
    return f"{version} {issued_at!r}"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PolicyFollower:
    """Follows the feed: `on_change(policy)` with each verified policy newer than the last, at
    start and after each notice (or every `refresh_s`, in case one was missed). A document that
    does not verify, or an older one, is refused and logged; the last verified one stays."""

    def __init__(
        self,
        feed: PolicyFeed,
        key: Ed25519PublicKey,
        on_change: Callable[[EdgePolicy], None] = lambda _: None,
        *,
        refresh_s: float = 1.0,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.time,
    ):
        self._feed = feed
        self._key = key
        self._on_change = on_change
        self._refresh_s = refresh_s
        # Between two reads: a burst of logouts becomes one file, not one per logout (Envoy
        # takes 60-80 ms of its main thread to apply 10,000 revocations; docs/performance.md).
        self._min_interval_s = min_interval_s
        self._clock = clock
        self.held: EdgePolicy | None = None
        # Sealed documents refused since start (forged, unreadable or older than the one held).
        self.refused = 0

    def is_revoked(self, session_id: str) -> bool:
        return self.held is not None and self.held.is_revoked(session_id, self._clock())

    def age_s(self) -> float | None:
        """How long ago the policy held was issued; None while none is."""
        return None if self.held is None else max(0.0, self._clock() - self.held.issued_at)

    async def run(self) -> None:
        """Checks the feed at each notice, and every `refresh_s` in case one was missed, until
        cancelled; a lost subscription is made again."""
        await follow(
            self.check,
            notices=self._feed.notices(),
            refresh_s=self._refresh_s,
            wait_first=True,
            pause_s=self._min_interval_s,
            name="edge-policy",
            failed="edge policy not checked; checking again",
            lost="edge policy notices lost; reading every refresh",
        )

    async def check(self) -> None:
        """Reads the feed once; applies what it holds if it is verified and newer."""
        held = self.held
        try:
            stamp = await self._feed.stamp()
            if stamp is None or (held is not None and stamp <= (held.version, held.issued_at)):
                return
            sealed = await self._feed.read()
        except (RedisError, OSError) as exc:
            log.warning("edge policy unreadable; the last one stays", error=str(exc))
            return
        if sealed is None:
            return
        try:
            policy = unseal(sealed, self._key)
        except ForgedPolicy as exc:
            self.refused += 1
            log.error("edge policy refused; the last one stays", reason=str(exc))
            return
        if not policy.newer_than(held):
            self.refused += 1
            log.error(
                "edge policy refused: older than the one held",
                version=policy.version,
                held=held.version if held else None,
            )
            return
        try:
            self._on_change(policy)
        except Exception:  # a failure to apply it must not end the watch: tried again later
            log.exception("edge policy not applied; trying again at the next change")
            return
        self.held = policy


def export_metrics(follower: PolicyFollower, registry: CollectorRegistry) -> None:
    """The policy `follower` holds, as what Prometheus scrapes from its process: its age (the
    alert `EdgePolicyStale` fires on it), its version, whether one is held, and how many
    documents were refused."""
    Gauge(
        "ordermesh_edge_policy_age_seconds",
        "Seconds since the auth service issued the edge policy this process enforces "
        "(NaN while it holds none)",
        registry=registry,
    ).set_function(lambda: _or_nan(follower.age_s()))
    Gauge(
        "ordermesh_edge_policy_held",
        "1 once this process holds a verified edge policy",
        registry=registry,
    ).set_function(lambda: float(follower.held is not None))
    Gauge(
        "ordermesh_edge_policy_version",
        "Version of the edge policy held (0: none)",
        registry=registry,
    ).set_function(lambda: float(follower.held.version if follower.held else 0))
    Gauge(
        "ordermesh_edge_policy_refused",
        "Sealed edge policies refused since start (forged, unreadable or older than the one held)",
        registry=registry,
    ).set_function(lambda: float(follower.refused))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
