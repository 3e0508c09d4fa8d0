"""The edge policy reaches Envoy without a restart: the keys and revoked sessions published to
the feed (a private Redis) are enforced by a real Envoy through its agent's files, and stay
enforced while Redis is down and after the agent restarts.

No service runs behind this gateway: a request the access filters let through meets no
healthy upstream (503), one they refuse is answered 401 or 403 by Envoy itself.
"""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from gateway import policy
from gateway.policy import PolicyFeed
from harness.gateway import LocalGateway
from harness.redis import PrivateRedis
from harness.shop import eventually

ME = "/v1/users/me"  # AUTHENTICATED
PRODUCTS = "/v1/products"  # POST: ADMIN, with the auth service's check


class Issuer:
    """A signing key of the test's own, and tokens it signs."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self._key = Ed25519PrivateKey.generate()

    @property
    def jwk(self) -> dict:
        jwk = json.loads(OKPAlgorithm.to_jwk(self._key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}

    def token(self, *, lifetime_s: int = 300, **claims) -> str:
        now = int(time.time())
        payload = {
            "iss": "ordermesh",
            "aud": "ordermesh",
            "sub": "ada",
            "sid": uuid.uuid4().hex,
            "roles": ["customer"],
            "iat": now,
            "exp": now + lifetime_s,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, self._key, algorithm="EdDSA", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("edge-redis"))
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def gateway(redis, tmp_path_factory):
    running = LocalGateway(
        tmp_path_factory.mktemp("edge-gateway"), redis_url=redis.url, rate_limit=False
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def client(redis):
    connection = aioredis.from_url(redis.url, decode_responses=True)
    yield connection
    await connection.aclose()


@pytest.fixture
def feed(client):
    return PolicyFeed(client)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def answer(http, gateway, token: str, *, post: bool = False) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {token}"}
    if post:
        request = http.post(f"{gateway.url}{PRODUCTS}", json={"sku": "S"}, headers=headers)
    else:
        request = http.get(f"{gateway.url}{ME}", headers=headers)
    async with request as response:
        return response.status, (await response.json(content_type=None))["message"]


async def admitted(http, gateway, token: str) -> bool:
    """Through every access filter: only the missing upstream refuses it."""
    status, message = await answer(http, gateway, token)
    return status == 503 and "no healthy upstream" in message


async def test_tokens_verify_with_the_published_keys_only(gateway, feed, http):
    first, second, stranger = Issuer(), Issuer(), Issuer()
    await feed.publish_keys({"keys": [first.jwk]})
    await eventually(lambda: admitted(http, gateway, first.token()), what="first key applied")
    assert await answer(http, gateway, stranger.token()) == (
        401,
        "the access token was refused: Jwks doesn't have key to match kid or alg from Jwt",
    )

    # A new key is published beside the old one (a rotation): both verify.
    await feed.publish_keys({"keys": [first.jwk, second.jwk]})
    await eventually(lambda: admitted(http, gateway, second.token()), what="new key applied")
    assert await admitted(http, gateway, first.token())


async def test_tokens_that_live_longer_than_the_maximum_are_refused(gateway, feed, http):
    issuer = Issuer()
    await feed.publish_keys({"keys": [issuer.jwk]})
    await eventually(lambda: admitted(http, gateway, issuer.token()), what="key applied")

    status, message = await answer(http, gateway, issuer.token(lifetime_s=2 * 3600))
    assert status == 401, message


async def test_tokens_without_issuer_audience_or_expiry_are_refused(gateway, feed, http):
    issuer = Issuer()
    await feed.publish_keys({"keys": [issuer.jwk]})
    await eventually(lambda: admitted(http, gateway, issuer.token()), what="key applied")

    for claim in ("iss", "aud", "exp"):
        status, message = await answer(http, gateway, issuer.token(**{claim: None}))
        assert status == 401, f"without {claim}: {message}"


async def test_revoked_sessions_are_refused_among_ten_thousand(gateway, client, feed, http):
    issuer = Issuer()
    await feed.publish_keys({"keys": [issuer.jwk]})
    until = time.time() + 600
    # Sessions revoked earlier, by others.
    await client.zadd(policy.REVOKED, {f"old-{n}": until for n in range(10_000)})
    ended, alive, long_ago = (uuid.uuid4().hex for _ in range(3))
    await feed.revoke(long_ago, time.time() - 1)  # its tokens have all expired: not enforced
    await feed.revoke(ended, until)

    async def refused() -> bool:
        return await answer(http, gateway, issuer.token(sid=ended)) == (
            401,
            "this session was ended: log in again",
        )

    await eventually(refused, what="revoked session refused")
    assert await admitted(http, gateway, issuer.token(sid=alive))
    assert await admitted(http, gateway, issuer.token(sid="old-9999x"))
    assert not await admitted(http, gateway, issuer.token(sid="old-9999"))


async def test_admin_routes_need_the_role_in_the_token_and_the_auth_services_check(
    gateway, feed, http
):
    issuer = Issuer()
    await feed.publish_keys({"keys": [issuer.jwk]})
    await eventually(lambda: admitted(http, gateway, issuer.token()), what="key applied")

    status, message = await answer(http, gateway, issuer.token(), post=True)
    assert (status, message) == (403, "this RPC is for administrators only")
    # The role passes Envoy's rule; no auth instance answers the check: closed.
    status, message = await answer(http, gateway, issuer.token(roles=["admin"]), post=True)
    assert status == 503
    assert "auth service is unavailable" in message


async def test_the_policy_holds_while_redis_is_down_and_after_the_agent_restarts(
    redis, gateway, feed, http
):
    issuer = Issuer()
    ended = uuid.uuid4().hex
    await feed.publish_keys({"keys": [issuer.jwk]})
    await feed.revoke(ended, time.time() + 600)
    await eventually(lambda: admitted(http, gateway, issuer.token()), what="key applied")

    async def refused() -> bool:
        return (await answer(http, gateway, issuer.token(sid=ended)))[0] == 401

    await eventually(refused, what="revocation applied")

    redis.stop()
    try:
        gateway.agent.stop()
        gateway.agent.start()  # with Redis down: the files it finds stay
        assert await admitted(http, gateway, issuer.token())
        assert await refused()
    finally:
        redis.start()
