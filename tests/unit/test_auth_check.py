"""The auth service's per-call check (Envoy's ext_authz, on the routes whose contract asks for
it) decides from the same facts as Envoy: the token, the revoked sessions, the admin role."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from inventory.v1 import inventory_service_pb2
from jwt.algorithms import OKPAlgorithm
from ordermesh.gateway.auth.api import Authorization
from ordermesh.identity import AccessPolicy
from ordermesh.policy import EdgePolicy
from ordermesh.tokens import CLOCK_SKEW_S, KeySet, TokenVerifier

CREATE_PRODUCT = "/inventory.v1.InventoryService/CreateProduct"
KEY = Ed25519PrivateKey.generate()
JWK = {**json.loads(OKPAlgorithm.to_jwk(KEY.public_key())), "kid": "k1", "alg": "EdDSA"}


def token(*, roles: list[str], sid: str = "s-1") -> str:
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": "ada", "sid": sid, "roles": roles, "iat": now}
    return jwt.encode({**claims, "exp": now + 300}, KEY, algorithm="EdDSA", headers={"kid": "k1"})


def check(path: str, bearer: str | None = None) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.path = path
    if bearer is not None:
        request.attributes.request.http.headers["authorization"] = f"Bearer {bearer}"
    return request


def authorization(*, revoked: dict[str, float] | None = None, keys_answer: bool = True):
    async def jwks():
        if not keys_answer:
            raise ConnectionError("the issuer is unreachable")
        return {"keys": [JWK]}

    # The revoked sessions as a follower of the published policy holds them (ordermesh.policy).
    policy = EdgePolicy(version=1, issued_at=time.time(), jwks=None, revoked=revoked or {})
    verifier = TokenVerifier(
        KeySet(jwks),
        issuer="i",
        audience="a",
        revoked=lambda session: policy.is_revoked(session, time.time()),
    )
    access = AccessPolicy(
        [inventory_service_pb2.DESCRIPTOR.services_by_name["InventoryService"]], verifier
    )
    return Authorization(access)


def outcome(response: external_auth_pb2.CheckResponse) -> tuple[int, int]:
    return response.status.code, response.denied_response.status.code


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["admin"], (code_pb2.OK, 0)),
        (["customer"], (code_pb2.PERMISSION_DENIED, 403)),
        (None, (code_pb2.UNAUTHENTICATED, 401)),  # no token
        ("garbage", (code_pb2.UNAUTHENTICATED, 401)),
    ],
    ids=["admin", "customer", "no token", "garbage"],
)
async def test_an_admin_rpc_is_allowed_to_admins_only(roles, expected):
    # Tokens are made here, not at collection: a suite can take longer than their lifetime.
    bearer = roles if roles in (None, "garbage") else token(roles=roles)
    assert outcome(await authorization().Check(check(CREATE_PRODUCT, bearer), None)) == expected


async def test_a_revoked_session_is_refused_even_with_the_admin_role():
    sid = uuid.uuid4().hex
    refusing = authorization(revoked={sid: time.time() + 600})
    response = await refusing.Check(check(CREATE_PRODUCT, token(roles=["admin"], sid=sid)), None)
    assert outcome(response) == (code_pb2.UNAUTHENTICATED, 401)
    assert "session was ended" in response.status.message
    # Once its last token has expired, the revocation no longer matters.
    expired = authorization(revoked={sid: time.time() - CLOCK_SKEW_S - 1})
    response = await expired.Check(check(CREATE_PRODUCT, token(roles=["admin"], sid=sid)), None)
    assert outcome(response) == (code_pb2.OK, 0)


async def test_methods_the_gateway_does_not_route_are_not_found():
    for path in ("/inventory.v1.InventoryService/Unknown", "/no.Such/Method"):
        response = await authorization().Check(check(path, token(roles=["admin"])), None)
        assert outcome(response) == (code_pb2.NOT_FOUND, 404), path


async def test_without_the_issuers_keys_the_check_answers_unavailable():
    response = await authorization(keys_answer=False).Check(
        check(CREATE_PRODUCT, token(roles=["admin"])), None
    )
    assert outcome(response) == (code_pb2.UNAVAILABLE, 503)
