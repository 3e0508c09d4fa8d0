"""Envoy's ext_authz check: who is calling, may they call this RPC, and who to tell the service.

For each request Envoy asks `Check` (after transcoding, so REST and gRPC calls alike arrive as
the gRPC path `/pkg.Service/Method`), and gets back:
- a method the contracts do not route from outside (INTERNAL, undeclared, unknown): 404;
- PUBLIC: allowed, and any `x-ordermesh-identity` or `x-ordermesh-user` header a client sent
  is removed;
- AUTHENTICATED or ADMIN: the bearer token verified against the user service's keys
  (chassis.tokens), its session not revoked, the admin role where needed; then allowed with the
  caller in `x-ordermesh-identity`, signed, and its user id in `x-ordermesh-user` (what the
  per-user rate limits count by), replacing any copy a client sent; else 401 (no,
  bad, expired or revoked token) or 403 (not an admin); 503 if no key set can be had.
The denial's text becomes the JSON body `{"code", "message"}` at the gateway.
"""

from __future__ import annotations

import grpc
from common.v1 import options_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from chassis.errors import PermissionDenied, Unauthenticated, Unavailable
from chassis.grpc import Service
from chassis.identity import IDENTITY_HEADER, USER_HEADER, AccessPolicy, SignedIdentity
from chassis.logging import get_logger
from chassis.tokens import Claims
from services.auth.revocations import Revocations

log = get_logger(__name__)

ROUTED = {options_pb2.ACCESS_PUBLIC, options_pb2.ACCESS_AUTHENTICATED, options_pb2.ACCESS_ADMIN}
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    """A request header for the service, replacing any a client sent."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=OVERWRITE
    )


def _deny(status: int, code: int, message: str) -> external_auth_pb2.CheckResponse:
    headers = []
    if status == 401:
        headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="www-authenticate", value="Bearer"),
                append_action=OVERWRITE,
            )
        )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status), headers=headers, body=message
        ),
    )


class Authorization(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, policy: AccessPolicy, identity: SignedIdentity, revocations: Revocations):
        self._policy = policy
        self._identity = identity
        self._revocations = revocations
        self._signatures: dict[Claims, str] = {}

    def _signed(self, claims: Claims) -> str:
        """The signed identity of some claims, signed once (a token is checked at every
        request of its bearer, and its claims never change)."""
        signed = self._signatures.get(claims)
        if signed is None:
            if len(self._signatures) >= 10_000:
                self._signatures.clear()
            signed = self._signatures[claims] = self._identity.sign(claims)
        return signed

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        path = http.path.partition("?")[0]
        if self._policy.level(path) not in ROUTED:
            return _deny(404, code_pb2.NOT_FOUND, "no such route")
        try:
            claims = await self._policy.admit(path, http.headers)
        except Unauthenticated as exc:
            return _deny(401, code_pb2.UNAUTHENTICATED, str(exc))
        except PermissionDenied as exc:
            return _deny(403, code_pb2.PERMISSION_DENIED, str(exc))
        except Unavailable as exc:
            log.warning("cannot verify tokens", error=str(exc))
            return _deny(503, code_pb2.UNAVAILABLE, "cannot verify tokens now; try again")
        if claims is None:
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers_to_remove=[IDENTITY_HEADER, USER_HEADER]
                ),
            )
        if self._revocations.revoked(claims.session_id):
            return _deny(401, code_pb2.UNAUTHENTICATED, "this session was ended: log in again")
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=[
                    _header(IDENTITY_HEADER, self._signed(claims)),
                    _header(USER_HEADER, claims.user_id),
                ]
            ),
        )


def service(authorization: Authorization) -> Service:
    return Service(
        descriptor=external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"],
        servicer=authorization,
        add_to_server=external_auth_pb2_grpc.add_AuthorizationServicer_to_server,
        governed=False,
    )
