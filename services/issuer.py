"""The token issuer: the service whose signing keys verify every access token, and the RPC that
publishes them (`user.v1.UserService/GetJwks`).

A fact of the whole system kept apart from the catalogue, so that a service that verifies
tokens (through `ordermesh.defaults`) or publishes the keys in the edge policy (the auth
service) learns who the issuer is without importing every other service's settings.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import Message
from ordermesh.tokens import KeyIssuer
from user.v1 import events_pb2, user_service_pb2, user_service_pb2_grpc

__all__ = ["ISSUER"]


async def _published_keys(channel: grpc.aio.Channel, timeout_s: float) -> Message:
    response: Message = await user_service_pb2_grpc.UserServiceStub(channel).GetJwks(
        user_service_pb2.GetJwksRequest(), timeout=timeout_s
    )
    return response


# A session ended (logout, a refresh token reused) is revoked at every gateway by the auth
# service (ordermesh.gateway.auth) until its last access token expires.
ISSUER = KeyIssuer("user", _published_keys, revocations=(events_pb2.SessionRevoked,))
