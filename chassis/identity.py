"""Who is calling, and who may call what: the access levels the contracts declare, enforced.

Every RPC declares its access level in its contract (`(common.v1.access)`); the gRPC edge
(`chassis.grpc`) enforces it before the handler runs:
- PUBLIC: anyone; a token, if sent, is ignored;
- AUTHENTICATED: a valid access token in the `authorization: Bearer <jwt>` metadata;
- ADMIN: the same, carrying the `admin` role;
- INTERNAL: service-to-service only; the gateway never routes it from outside;
- no level declared: refused (fail closed).
A refused call ends UNAUTHENTICATED (no or bad token) or PERMISSION_DENIED (not allowed), and
the handler never runs. For the others, the verified caller is in a contextvar for the call's
duration: handlers take the caller from `current_caller()`, never from the request.

Behind the gateway, the caller comes from the gateway's auth service instead: it verified the
token and forwards the caller in the `x-ordermesh-identity` header, signed with a key it shares
with the services (HMAC-SHA256, `IDENTITY_KEY`), after removing any copy a client sent. A
service given that key takes the caller from the header when it is there, so a forged or
replayed-after-expiry header is refused; without the header it verifies the bearer token itself
(direct gRPC calls inside the system).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Protocol

from common.v1 import options_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from chassis.errors import PermissionDenied, Unauthenticated
from chassis.tokens import Claims

__all__ = [
    "IDENTITY_HEADER",
    "USER_HEADER",
    "AccessPolicy",
    "Authenticator",
    "SignedIdentity",
    "caller",
    "current_caller",
]

IDENTITY_HEADER = "x-ordermesh-identity"
# The verified caller's user id in plain, set by the gateway's auth service beside the signed
# identity: what the gateway's per-user rate limits count by. Services never read it.
USER_HEADER = "x-ordermesh-user"

caller: ContextVar[Claims | None] = ContextVar("caller", default=None)


def current_caller() -> Claims:
    """The verified caller of the current RPC; Unauthenticated outside an authenticated call."""
    claims = caller.get()
    if claims is None:
        raise Unauthenticated("this call carries no verified caller")
    return claims


class Authenticator(Protocol):
    async def verify(self, token: str) -> Claims: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignedIdentity:
    """The caller as the gateway forwards it: `<claims as base64 JSON>.<HMAC-SHA256 of them>`."""

    def __init__(self, key: str | bytes, *, clock: Callable[[], float] = time.time):
        self._key = key.encode() if isinstance(key, str) else key
        if len(self._key) < 32:
            raise ValueError("the identity key must have at least 32 bytes")
        self._clock = clock

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def sign(self, claims: Claims) -> str:
        payload = _b64(
            json.dumps(
                {
                    "sub": claims.user_id,
                    "roles": list(claims.roles),
                    "sid": claims.session_id,
                    "jti": claims.token_id,
                    "exp": claims.expires_at,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._mac(payload)}"

    def verify(self, value: str) -> Claims:
        payload, _, mac = value.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise Unauthenticated(f"the {IDENTITY_HEADER} header is not signed by the gateway")
        try:
            data = json.loads(_unb64(payload))
            claims = Claims(
                user_id=str(data["sub"]),
                roles=tuple(str(r) for r in data["roles"]),
                session_id=str(data["sid"]),
                token_id=str(data["jti"]),
                expires_at=float(data["exp"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated(f"the {IDENTITY_HEADER} header is malformed: {exc}") from None
        if claims.expires_at < self._clock():
            raise Unauthenticated("the access token behind this identity has expired")
        return claims


def access_of(method: MethodDescriptor) -> int:
    options = method.GetOptions()
    if not options.HasExtension(options_pb2.access):
        return int(options_pb2.ACCESS_UNSPECIFIED)
    return int(options.Extensions[options_pb2.access])


class AccessPolicy:
    """The access level of each method of some services, by its gRPC path `/pkg.Svc/Method`."""

    def __init__(
        self,
        services: Iterable[ServiceDescriptor],
        authenticator: Authenticator | None = None,
        identity: SignedIdentity | None = None,
    ):
        self._levels: Mapping[str, int] = {
            f"/{service.full_name}/{method.name}": access_of(method)
            for service in services
            for method in service.methods
        }
        self._authenticator = authenticator
        self._identity = identity

    def level(self, path: str) -> int | None:
        """The access level `path` declares; None for methods of other services."""
        return self._levels.get(path)

    def governs(self, path: str) -> bool:
        """False for methods of other services (health, reflection), which stay open."""
        return path in self._levels

    async def admit(self, path: str, metadata: Mapping[str, str]) -> Claims | None:
        """The caller of a call to `path`, if it may go ahead; raises if it may not."""
        level = self._levels[path]
        if level in (options_pb2.ACCESS_PUBLIC, options_pb2.ACCESS_INTERNAL):
            return None
        if level not in (options_pb2.ACCESS_AUTHENTICATED, options_pb2.ACCESS_ADMIN):
            raise PermissionDenied(f"{path} declares no access level in its contract")
        forwarded = metadata.get(IDENTITY_HEADER)
        if forwarded and self._identity is not None:
            claims = self._identity.verify(forwarded)
        else:
            token = _bearer_token(metadata)
            if self._authenticator is None:
                raise Unauthenticated(f"{path} needs a verified caller; this server verifies none")
            claims = await self._authenticator.verify(token)
        if level == options_pb2.ACCESS_ADMIN and not claims.is_admin:
            raise PermissionDenied(f"{path} is for administrators only")
        return claims


def _bearer_token(metadata: Mapping[str, str]) -> str:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated("no access token: send 'authorization: Bearer <token>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the authorization metadata is not 'Bearer <token>'")
    return token.strip()
