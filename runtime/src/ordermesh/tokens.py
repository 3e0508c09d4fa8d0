"""Access tokens: verifying the JWTs the user service issues, against the keys it publishes.

Guarantees of `TokenVerifier.verify()`: a token is accepted only if
- its header names an algorithm in `ALGORITHMS` (EdDSA) and a `kid` of the published key set
  (`alg=none`, HS256 signed with a public key, RS256 and every other algorithm are refused
  before any key is used);
- its signature verifies with that key;
- it carries `iss`, `aud`, `exp`, `iat` and `sub`; issuer and audience are the expected ones,
  and it has not expired (with `leeway_s` of clock skew).
Anything else raises `InvalidToken` (an `Unauthenticated` domain error) naming the reason, and
so does a token of a session the edge policy says was ended (`revoked`, a
`ordermesh.policy.PolicyFollower` of the auth service's published policy, checked on every call,
cached tokens too): a call straight to a service is refused as the gateway refuses it, within
the same second.

The credential rule, the same at the gateway (ordermesh.gateway.envoy) and every service
(`bearer_token`): one `authorization` value, `Bearer <token>` with the scheme as written here and a
token of the JWT alphabet; anything else is refused, never taken for "no token". Never in a URL.

Verified tokens are remembered (up to `cache_size`, each until it expires), so a client that
sends the same token with every call pays for its signature check once; a token is immutable,
so what was verified stays verified until `exp`.

The key set is fetched from its source (the issuer's RPC that publishes it, `KeyIssuer`: the
user service's `GetJwks`, named in the service catalogue) when first needed and
again when a token names a `kid` it does not know (a rotation), at most once per
`refresh_interval_s`, so a flood of tokens with made-up key ids cannot hammer the source.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from google.protobuf import json_format
from google.protobuf.message import Message

from ordermesh.errors import Unauthenticated, Unavailable
from ordermesh.logging import get_logger
from ordermesh.upstream import Upstream

__all__ = [
    "ALGORITHMS",
    "CLOCK_SKEW_S",
    "Claims",
    "InvalidToken",
    "JwksSource",
    "KeyIssuer",
    "KeySet",
    "TokenVerifier",
    "bearer_token",
    "grpc_jwks_source",
]

ALGORITHMS = ("EdDSA",)
# How far apart two hosts' clocks may be, for every verifier of a token (each service here,
# jwt_authn at the gateway, ordermesh.gateway.envoy): a token issued by a host whose clock runs up
# to this much ahead is accepted at once, and one is accepted up to this long after its expiry
# (so a revoked session stays revoked that much longer, ordermesh.policy). NTP keeps hosts
# within milliseconds; this tolerates one whose time sync failed for a while.
CLOCK_SKEW_S = 30
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")

log = get_logger(__name__)

JwksSource = Callable[[], Awaitable[Mapping[str, Any]]]


class InvalidToken(Unauthenticated):
    pass


# A compact JWS: three base64url parts (the second may be empty, the third not).
BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+)")
ENDED = "this session was ended: log in again"


def bearer_token(value: str) -> str:
    """The token of an `authorization` value; Unauthenticated unless it is `Bearer <jwt>`
    (two values, joined by a comma as HTTP does, are not)."""
    if not value:
        raise Unauthenticated("no access token: send 'authorization: Bearer <token>'")
    match = BEARER.fullmatch(value)
    if match is None:
        raise Unauthenticated(
            "the authorization header is not one 'Bearer <token>' (scheme as written, one token)"
        )
    return match.group(1)


@dataclass(frozen=True)
class KeyIssuer:
    """The service that signs access tokens, and its RPC that publishes the key set: called on
    a channel with a timeout, it answers a message of RFC 7517's shape (`keys`, each a JWK)."""

    service: str
    fetch: Callable[[grpc.aio.Channel, float], Awaitable[Message]]
    # The events it publishes when it ends a session before the session's access tokens expire
    # (logout, a refresh token reused): each with `session_id` (a string) and `expire_time`
    # (a Timestamp, when the last of them expires). The auth service revokes the session at
    # every gateway (ordermesh.gateway.auth); none: sessions end only as their tokens expire.
    revocations: tuple[type[Message], ...] = ()

    def __post_init__(self) -> None:
        for event in self.revocations:
            fields = event.DESCRIPTOR.fields_by_name
            session, expires = fields.get("session_id"), fields.get("expire_time")
            if (
                session is None
                or session.type != session.TYPE_STRING
                or expires is None
                or expires.message_type is None
                or expires.message_type.full_name != "google.protobuf.Timestamp"
            ):
                raise TypeError(
                    f"{event.DESCRIPTOR.full_name} cannot revoke a session: it needs "
                    "string session_id and google.protobuf.Timestamp expire_time"
                )


def grpc_jwks_source(issuer: KeyIssuer, upstream: Upstream) -> JwksSource:
    """Fetches the key set from `issuer`, on any of its instances (`upstream`)."""

    async def fetch() -> Mapping[str, Any]:
        response = await upstream.call(issuer.fetch, idempotent=True)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    return fetch


@dataclass(frozen=True)
class Claims:
    """What a verified access token says about its bearer."""

    user_id: str
    roles: tuple[str, ...]
    session_id: str
    token_id: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class KeySet:
    """The published verification keys by `kid`, refreshed from their source on demand.

    Fetched again when a token names an unknown `kid` (at most once per `refresh_interval_s`)
    and when the set is older than `max_age_s`, so a key the issuer stopped publishing is
    forgotten. If the source cannot answer, the last set fetched stays in use; with none yet,
    verification is Unavailable.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        refresh_interval_s: float = 1.0,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._source = source
        self._refresh_interval_s = refresh_interval_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Fetches the set now; Unavailable if the source cannot answer and none is known."""
        async with self._lock:
            await self._refresh()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, if the issuer publishes it."""
        if self._stale(kid):
            async with self._lock:
                if self._stale(kid):
                    await self._refresh()
        return (self._keys or {}).get(kid)

    def _stale(self, kid: str) -> bool:
        age = self._clock() - self._fetched_at
        if self._keys is None or age >= self._max_age_s:
            return True
        return kid not in self._keys and age >= self._refresh_interval_s

    async def _refresh(self) -> None:
        self._fetched_at = self._clock()
        try:
            jwks = await self._source()
        except Exception as exc:  # noqa: BLE001 - any failure of the source is an outage
            log.warning("cannot fetch the verification keys", error=f"{type(exc).__name__}: {exc}")
            if self._keys is None:
                raise Unavailable("the keys that verify access tokens cannot be fetched") from None
            return
        keys = {}
        for entry in jwks.get("keys", ()):
            if entry.get("alg") in ALGORITHMS and entry.get("kid"):
                keys[entry["kid"]] = jwt.PyJWK(dict(entry))
        self._keys = keys


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = CLOCK_SKEW_S,
        algorithms: Sequence[str] = ALGORITHMS,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        revoked: Callable[[str], bool] = lambda _: False,
    ):
        self._keys = keys
        self._revoked = revoked
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._algorithms = list(algorithms)
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is not None and claims.expires_at + self._leeway_s <= self._clock():
            del self._verified[token]
            claims = None
        if claims is None:
            claims = await self._verify(token)
            self._verified[token] = claims
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        if claims.session_id and self._revoked(claims.session_id):
            raise InvalidToken(ENDED)
        return claims

    async def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token names no key id (kid)")
        key = await self._keys.key(kid)
        if key is None:
            raise InvalidToken(f"token signed by unknown key {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {exc}") from None
        roles = claims.get("roles", [])
        return Claims(
            user_id=str(claims["sub"]),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            session_id=str(claims.get("sid", "")),
            token_id=str(claims.get("jti", "")),
            expires_at=float(claims["exp"]),
        )
