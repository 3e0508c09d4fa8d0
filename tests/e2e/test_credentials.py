"""One credential rule on every door (issue 25, defect 1): a token only in `authorization:
Bearer <token>`, one of them, never in a URL, refused with 401 otherwise; and a logged-out
session's token refused everywhere it could be used: REST, gRPC and GraphQL through the
gateway, the subgraph listener behind it, and each service called directly (gRPC and its
subgraph), within a second of the logout.

Before this rule, a revoked token still worked at /graphql with the scheme written `bearer`
(jwt_authn saw no token, /graphql allows none, the subgraph accepted any case) or beside
another valid token in `?access_token=` (two session values matched no revocation)."""

from __future__ import annotations

import time

import aiohttp
import grpc
import pytest
from multidict import CIMultiDict
from ordermesh.identity import INTERNAL_HEADER
from ordermesh.registry import Registry

from harness.shop import eventually

ME = "{ me { email } }"
ENDED = "this session was ended: log in again"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def graphql(http, url: str, headers, *, query: str = ME) -> tuple[int, dict]:
    async with http.post(url, json={"query": query}, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def logged_out(shop, gateway, http):
    """A session ended through the gateway, once the gateway refuses its token."""
    victim = await shop.register()
    body = {"refreshToken": victim.refresh_token}
    async with http.post(f"{gateway.url}/v1/auth/logout", json=body) as response:
        assert response.status == 200
    bearer = {"authorization": f"Bearer {victim.access_token}"}

    async def refused() -> bool:
        status, answer = await graphql(http, f"{gateway.url}/graphql", bearer)
        return status == 401 and answer["errors"][0]["message"] == ENDED

    await eventually(refused, timeout_s=5, what="the ended session refused at the gateway")
    return victim


async def test_a_revoked_token_is_refused_at_graphql_however_it_is_written(gateway, shop, http):
    victim = await logged_out(shop, gateway, http)
    attacker = await shop.register()
    url = f"{gateway.url}/graphql"
    token = victim.access_token
    attempts = {
        "scheme in lower case": ({"authorization": f"bearer {token}"}, url),
        "scheme in capitals": ({"authorization": f"BEARER {token}"}, url),
        "another token in the URL": (
            {"authorization": f"Bearer {token}"},
            f"{url}?access_token={attacker.access_token}",
        ),
        "two authorization headers": (
            CIMultiDict(
                [
                    ("authorization", f"Bearer {attacker.access_token}"),
                    ("authorization", f"Bearer {token}"),
                ]
            ),
            url,
        ),
        "only in the URL": ({}, f"{url}?access_token={token}"),
    }
    for what, (headers, target) in attempts.items():
        status, answer = await graphql(http, target, headers)
        assert status == 401, f"{what}: {status} {answer}"
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", what

    # The attacker's own token, in the URL, is not accepted either (nor in the REST API).
    status, _ = await graphql(http, f"{url}?access_token={attacker.access_token}", {})
    assert status == 401
    async with http.get(
        f"{gateway.url}/v1/users/me", headers={"authorization": f"bearer {attacker.access_token}"}
    ) as response:
        assert response.status == 401
        assert "never in a URL" in (await response.json())["message"]
    # Written as the rule says, it works.
    status, answer = await graphql(http, url, {"authorization": f"Bearer {attacker.access_token}"})
    assert (status, answer["data"]) == (200, {"me": {"email": attacker.email}})


async def test_a_revoked_token_is_refused_behind_the_gateway_too(gateway, shop, http, system):
    """The subgraph listener, the user service's subgraph and gRPC API, called directly, as a
    process inside the system could (with the internal hops' secret): each refuses the ended
    session within a second."""
    victim = await shop.register()
    direct = await subgraph_urls(system)
    listener = f"http://127.0.0.1:{gateway.config.subgraphs_port}/graphql/user"
    bearer = {
        "authorization": f"Bearer {victim.access_token}",
        INTERNAL_HEADER: system.internal_token,
    }
    assert await shop.credit_available(victim) >= 0
    for url in [*direct, listener]:
        status, answer = await graphql(http, url, bearer)
        assert answer == {"data": {"me": {"email": victim.email}}}, url

    started = time.monotonic()
    body = {"refreshToken": victim.refresh_token}
    async with http.post(f"{gateway.url}/v1/auth/logout", json=body) as response:
        assert response.status == 200

    async def grpc_refuses() -> bool:
        try:
            await shop.credit_available(victim)
        except grpc.aio.AioRpcError as exc:
            return (exc.code(), exc.details()) == (grpc.StatusCode.UNAUTHENTICATED, ENDED)
        return False

    await eventually(grpc_refuses, timeout_s=5, what="the user service refusing the session")
    refused_s = time.monotonic() - started
    for url in direct:
        _, answer = await graphql(http, url, bearer)
        (error,) = answer["errors"]
        assert (error["message"], error["extensions"]["code"]) == (ENDED, "UNAUTHENTICATED"), url
    status, answer = await graphql(http, listener, bearer)
    assert (status, answer["errors"][0]["message"]) == (401, ENDED)
    print(f"a service refused the ended session {refused_s * 1000:.0f} ms after the logout")


async def test_the_internal_ports_refuse_whoever_did_not_come_through_the_gateway(
    gateway, shop, http, system
):
    """The federation gateway's port, the subgraph listener and each subgraph answer anyone
    who can reach them (any local user, any container of the network) only with the internal
    hops' secret, which Envoy's public listener adds: without it, or with a wrong one, 401,
    before any token or query is looked at."""
    ada = await shop.register()
    bearer = {"authorization": f"Bearer {ada.access_token}"}
    doors = [
        f"http://{gateway.graphql.address}/graphql",
        f"http://127.0.0.1:{gateway.config.subgraphs_port}/graphql/user",
        *await subgraph_urls(system),
    ]
    for url in doors:
        for wrong in ({}, {INTERNAL_HEADER: "guessed-" + system.internal_token[8:]}):
            status, answer = await graphql(http, url, {**bearer, **wrong})
            assert status == 401, (url, wrong, answer)
            (error,) = answer["errors"]
            assert error["message"] == "this port takes calls from the gateway only", url
    # Through the gateway, the same request is answered.
    status, answer = await graphql(http, f"{gateway.url}/graphql", bearer)
    assert (status, answer["data"]) == (200, {"me": {"email": ada.email}})


async def subgraph_urls(system) -> list[str]:
    """The user service's subgraph, at each instance's own HTTP port."""
    registry = Registry(system._env["REDIS_URL"])
    try:
        return [
            f"http://{instance.host}:{instance.metrics_port}/graphql"
            for instance in await registry.instances("user")
        ]
    finally:
        await registry.close()
