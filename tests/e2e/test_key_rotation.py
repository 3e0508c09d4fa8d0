"""A signing key rotation leaves no window where valid tokens are refused: the new key reaches
every gateway (the auth service's feed, the agent's file, Envoy) before the user service signs
its first token with it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
from ordermesh.store.sqlite import SqliteStore

from services.user.keys import SIGNING_KEYS, SigningKeys

# Short, for the test: in a deployment an hour (SIGNING_KEY_LEAD_S). Longer than the session
# system's KEYS_REFRESH_S (1 s) plus the agent's refresh (1 s), as the setting's doc requires.
LEAD_S = 4.0


async def test_tokens_verify_at_the_gateway_across_a_forced_rotation(system, gateway, shop):
    store = SqliteStore(system.directory / "user" / "store.sqlite3")
    await store.open([SIGNING_KEYS])
    try:
        keys = SigningKeys(store, lifetime_s=7 * 86400.0, token_ttl_s=900.0, lead_s=LEAD_S)
        new = await keys.rotate()  # as an operator would, from another process
    finally:
        await store.close()
    ada = await shop.register()
    refused: list[str] = []
    signed_by: set[str] = set()
    deadline = time.monotonic() + LEAD_S + 6  # past the handover and every instance's recheck
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            token = (await shop.login(ada.email)).access_token
            signed_by.add(jwt.get_unverified_header(token)["kid"])
            headers = {"authorization": f"Bearer {token}"}
            async with http.get(f"{gateway.url}/v1/users/me", headers=headers) as response:
                if response.status != 200:
                    refused.append(f"{response.status} {await response.text()}")
            await asyncio.sleep(0.1)
    assert new.kid in signed_by, "the user service never signed with the new key"
    assert len(signed_by) == 2
    assert refused == []
