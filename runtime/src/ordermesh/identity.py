"""Who is calling, and who may call what: the access levels the contracts declare, enforced.

Every RPC declares its access level in its contract (`(common.v1.access)`); the gRPC edge
(`ordermesh.grpc`) enforces it before the handler runs:
- PUBLIC: anyone; a token, if sent, is ignored;
- AUTHENTICATED: a valid access token in the `authorization: Bearer <jwt>` metadata;
- ADMIN: the same, carrying the `admin` role;
- INTERNAL: service-to-service only; the gateway never routes it from outside;
- no level declared: refused (fail closed).
A refused call ends UNAUTHENTICATED (no or bad token) or PERMISSION_DENIED (not allowed), and
the handler never runs. For the others, the verified caller is in a contextvar for the call's
duration: handlers take the caller from `current_caller()`, never from the request.

Behind the gateway the same holds: Envoy verified the token (and refused revoked sessions)
and forwards it unchanged, and the service verifies it again (cached per token, and its session
checked against the revocations on every call, ordermesh.tokens), so a caller is never taken from
a header a client or another process could write. One `authorization` value, `Bearer <token>`
(`ordermesh.tokens.bearer_token`): two values (repeated metadata) are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Protocol

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.errors import PermissionDenied, Unauthenticated
from ordermesh.tokens import Claims, bearer_token

__all__ = [
    "CLIENT_HEADER",
    "INTERNAL_HEADER",
    "AccessPolicy",
    "Authenticator",
    "caller",
    "current_caller",
]

caller: ContextVar[Claims | None] = ContextVar("caller", default=None)
# Carries the secret of the system's internal hops (INTERNAL_TOKEN): the gateway sets it on the
# calls it makes to a service's HTTP routes (its GraphQL subgraph, its web pages: the console),
# which refuse calls without it, so that a port reachable on the host is not a door around the
# gateway.
INTERNAL_HEADER = "x-ordermesh-internal"
# The client's address as the gateway's public listener takes it (what its limits per address
# count by), on every call it passes on: the connection's peer, or, for a call that carries
# INTERNAL_HEADER's secret (a web site of the system calling for a browser), the address that
# site names here, the browser's, which the gateway gave the site on its pages' hop.
CLIENT_HEADER = "x-ordermesh-client"


def current_caller() -> Claims:
    """The verified caller of the current RPC; Unauthenticated outside an authenticated call."""
    claims = caller.get()
    if claims is None:
        raise Unauthenticated("this call carries no verified caller")
    return claims


class Authenticator(Protocol):
    async def verify(self, token: str) -> Claims: ...


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
    ):
        self._levels: Mapping[str, int] = {
            f"/{service.full_name}/{method.name}": access_of(method)
            for service in services
            for method in service.methods
        }
        self._authenticator = authenticator

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
        token = bearer_token(metadata.get("authorization", ""))
        if self._authenticator is None:
            raise Unauthenticated(f"{path} needs a verified caller; this server verifies none")
        claims = await self._authenticator.verify(token)
        if level == options_pb2.ACCESS_ADMIN and not claims.is_admin:
            raise PermissionDenied(f"{path} is for administrators only")
        return claims
