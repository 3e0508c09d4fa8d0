"""Envoy's ext_authz check, made on every call of the RPCs whose contract asks for it.

Envoy has already verified the token, refused revoked sessions and checked the admin role
(ordermesh.gateway.envoy); this is the Python policy component, deciding again from the same facts
(the token verified against the issuer's keys and the revoked sessions of the published
policy, ordermesh.tokens), and the place for rules worth a hop per call. `Check` gets the call after
transcoding, so REST and gRPC alike arrive as the gRPC path `/pkg.Service/Method`, and answers:
- a method the contracts do not route from outside (INTERNAL, undeclared, unknown): 404;
- PUBLIC: allowed;
- AUTHENTICATED or ADMIN: allowed if the token verifies, its session is not revoked and, for
  ADMIN, it carries the admin role; else 401 (no, bad, expired or revoked token) or 403 (not
  an admin); 503 if no key set can be had.
The denial's text becomes the JSON body `{"code", "message"}` at the gateway. Envoy refuses
the call (503) when no auth instance answers: where it is asked, this check fails closed.
"""

from __future__ import annotations

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.errors import PermissionDenied, Unauthenticated, Unavailable
from ordermesh.grpc import Service
from ordermesh.identity import AccessPolicy
from ordermesh.logging import get_logger

__all__ = ["OVERWRITE", "ROUTED", "Authorization", "service"]

log = get_logger(__name__)

ROUTED = {options_pb2.ACCESS_PUBLIC, options_pb2.ACCESS_AUTHENTICATED, options_pb2.ACCESS_ADMIN}
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


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
    def __init__(self, access: AccessPolicy):
        self._access = access

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        path = http.path.partition("?")[0]
        if self._access.level(path) not in ROUTED:
            return _deny(404, code_pb2.NOT_FOUND, "no such route")
        try:
            await self._access.admit(path, http.headers)
        except Unauthenticated as exc:
            return _deny(401, code_pb2.UNAUTHENTICATED, str(exc))
        except PermissionDenied as exc:
            return _deny(403, code_pb2.PERMISSION_DENIED, str(exc))
        except Unavailable as exc:
            log.warning("cannot verify tokens", error=str(exc))
            return _deny(503, code_pb2.UNAVAILABLE, "cannot verify tokens now; try again")
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))


def service(authorization: Authorization) -> Service:
    return Service(
        descriptor=external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"],
        servicer=authorization,
        add_to_server=external_auth_pb2_grpc.add_AuthorizationServicer_to_server,
        governed=False,
    )
