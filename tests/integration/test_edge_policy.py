"""The edge policy reaches Envoy without a restart: the keys and revoked sessions published to
the feed (a private Redis), signed as the auth service signs them, are enforced by a real
Envoy through its agent's files, and stay enforced while Redis is down, after it is flushed and
after the agent restarts; a policy anyone else signed is never applied.

No service runs behind this gateway (the registry names instances at an address nothing
listens on): a request the access filters let through meets no healthy upstream (503), one they
refuse is answered 401 or 403 by Envoy itself.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from ordermesh.gateway.envoy import GatewayConfig, clusters_of
from ordermesh.policy import EdgePolicy, PolicyFeed, new_policy_keys, seal, signing_key
from ordermesh.registry import Instance, Registry

from harness.gateway import LocalGateway
from harness.redis import PrivateRedis
from harness.shop import eventually

ME = "/v1/users/me"  # AUTHENTICATED
ENDED = (401, "this session was ended: log in again")
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


SIGNING_KEY, VERIFY_KEY = new_policy_keys()
SECRETS = {"EDGE_POLICY_VERIFY_KEY": VERIFY_KEY, "INTERNAL_TOKEN": secrets.token_urlsafe(32)}


@pytest.fixture(scope="module")
def gateway(redis, tmp_path_factory):
    running = LocalGateway(
        tmp_path_factory.mktemp("edge-gateway"),
        redis_url=redis.url,
        secrets=SECRETS,
        rate_limit=False,
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def client(redis):
    connection = aioredis.from_url(redis.url)
    yield connection
    await connection.aclose()


class Feed:
    """The auth service's side of the feed: a policy of its own, signed and published at each
    change (ordermesh.gateway.auth.service keeps it in its store; here it is kept in memory)."""

    def __init__(self, feed: PolicyFeed, key: str = SIGNING_KEY):
        self._feed = feed
        self._key = signing_key(key)
        self.jwks: dict | None = None
        self.revoked: dict[str, float] = {}
        self.version = int(time.time() * 1000)  # above any earlier test's

    async def publish(self) -> None:
        self.version += 1
        policy = EdgePolicy(self.version, time.time(), self.jwks, dict(self.revoked))
        await self._feed.publish(policy, seal(policy, self._key))

    async def publish_keys(self, jwks: dict) -> None:
        self.jwks = jwks
        await self.publish()

    async def revoke(self, session_id: str, until: float) -> None:
        self.revoked[session_id] = until
        await self.publish()


@pytest.fixture
def feed(client):
    return Feed(PolicyFeed(client))


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


async def test_revoked_sessions_are_refused_among_ten_thousand(gateway, feed, http):
    issuer = Issuer()
    await feed.publish_keys({"keys": [issuer.jwk]})
    until = time.time() + 600
    # Sessions revoked earlier, by others.
    feed.revoked.update({f"old-{n}": until for n in range(10_000)})
    ended, alive, long_ago = (uuid.uuid4().hex for _ in range(3))
    await feed.revoke(long_ago, time.time() - 1)  # its tokens have all expired: not enforced
    await feed.revoke(ended, until)

    async def refused() -> bool:
        return await answer(http, gateway, issuer.token(sid=ended)) == ENDED

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


async def test_a_policy_signed_by_anyone_but_the_auth_service_is_never_applied(gateway, feed, http):
    issuer, attacker = Issuer(), Issuer()
    ended = uuid.uuid4().hex
    await feed.publish_keys({"keys": [issuer.jwk]})
    await feed.revoke(ended, time.time() + 600)
    await eventually(lambda: refuses(http, gateway, issuer.token(sid=ended)), what="revoked")
    refused_before = await agent_metric(http, gateway, "ordermesh_edge_policy_refused")

    # Someone with Redis's password publishes a newer policy: their own key, no revocations.
    forger = Feed(feed._feed, key=new_policy_keys()[0])
    forger.version = feed.version + 100
    await forger.publish_keys({"keys": [issuer.jwk, attacker.jwk]})

    async def noticed() -> bool:
        refused = await agent_metric(http, gateway, "ordermesh_edge_policy_refused")
        return refused > refused_before

    await eventually(noticed, what="the forged policy refused by the agent")
    assert (await answer(http, gateway, attacker.token()))[0] == 401
    assert await answer(http, gateway, issuer.token(sid=ended)) == ENDED

    # The auth service's next policy is applied again.
    await feed.revoke(uuid.uuid4().hex, time.time() + 600)
    assert (await answer(http, gateway, issuer.token(sid=ended)))[0] == 401
    assert await admitted(http, gateway, issuer.token())


async def test_a_flushed_redis_lifts_no_revocation(gateway, feed, client, http):
    issuer = Issuer()
    ended = uuid.uuid4().hex
    await feed.publish_keys({"keys": [issuer.jwk]})
    await feed.revoke(ended, time.time() + 600)
    await eventually(lambda: refuses(http, gateway, issuer.token(sid=ended)), what="revoked")
    await client.flushall()  # what a restart of a Redis that keeps nothing on disk does
    for _ in range(20):  # 2 s: two refresh intervals of the agent
        assert await answer(http, gateway, issuer.token(sid=ended)) == ENDED
        await asyncio.sleep(0.1)
    assert await admitted(http, gateway, issuer.token())


async def test_the_gateway_is_ready_only_with_a_verified_policy_and_every_services_endpoints(
    redis, tmp_path_factory, http
):
    """A fresh gateway and a registry of its own: not ready with a policy and no endpoints,
    nor with endpoints and no policy (a placeholder key that refuses every token)."""
    gateway = LocalGateway(
        tmp_path_factory.mktemp("fresh-gateway"),
        redis_url=redis.url,
        secrets=SECRETS,
        rate_limit=False,
    )
    await asyncio.to_thread(gateway.start)
    registry = Registry(redis.url)
    connection = aioredis.from_url(redis.url)
    try:
        await connection.flushall()
        await asyncio.sleep(1.5)  # the agent read the empty registry and feed
        assert not gateway.ready()
        # Every service an agent writes endpoints for (the rate-limit service's too: the agent
        # has the defaults of a gateway's config, whatever this gateway's own).
        agents = GatewayConfig(
            port=0,
            eds_dir=gateway.config.eds_dir,
            catalogue=gateway.config.catalogue,
            descriptor_set=gateway.config.descriptor_set,
        )
        for service in clusters_of(agents):
            instance = Instance(service, f"{service}-x", "127.0.0.1:9")  # nothing listens
            await registry.put(instance, ttl_s=60)
        await asyncio.sleep(1.5)
        assert not gateway.ready()  # endpoints, and no policy yet

        await Feed(PolicyFeed(connection)).publish_keys({"keys": [Issuer().jwk]})
        await eventually(lambda: asyncio.to_thread(gateway.ready), what="ready")
    finally:
        await registry.close()
        await connection.aclose()
        await asyncio.to_thread(gateway.stop)


async def refuses(http, gateway, token: str) -> bool:
    return await answer(http, gateway, token) == ENDED


async def agent_metric(http, gateway, name: str) -> float:
    async with http.get(f"{gateway.agent_url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[-1])
    raise AssertionError(f"{name} not exported by the agent")
