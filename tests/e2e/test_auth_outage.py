"""With every auth instance killed, the gateway goes on deciding alone: authenticated reads and
writes are all answered, ended sessions stay refused, the routes whose contract asks for the
auth service's check answer 503, and a logout made meanwhile is enforced once auth returns."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from harness.shop import eventually
from tests.e2e.worlds import Traffic, customer


async def logout(http: aiohttp.ClientSession, base: str, refresh_token: str) -> None:
    async with http.post(f"{base}/v1/auth/logout", json={"refreshToken": refresh_token}) as r:
        assert r.status == 200, await r.text()


async def refused(http: aiohttp.ClientSession, base: str, access_token: str) -> bool:
    headers = {"authorization": f"Bearer {access_token}"}
    async with http.get(f"{base}/v1/users/me", headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status == 401 and "session was ended" in body["message"]


async def admin_closed(http: aiohttp.ClientSession, base: str, admin_token: str) -> bool:
    headers = {"authorization": f"Bearer {admin_token}"}
    async with http.post(f"{base}/v1/products", json={"sku": "X"}, headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status == 503 and "auth service" in body["message"]


async def test_with_every_auth_instance_down_the_gateway_answers_and_keeps_refusing(
    system, gateway, shop
):
    # Every auth instance of this system: the session's, and one more (both killed below).
    other = await asyncio.to_thread(system.add_instance, "auth", "auth-x")
    auths = [system.processes["auth"], other]
    await asyncio.to_thread(gateway.wait_for_healthy, 2, clusters=["auth"])
    token, _, product_id = await customer(system)
    admin = await shop.admin()
    before, during = await shop.register(), await shop.register()
    base = gateway.url
    traffic = Traffic(base, token, product_id)
    outage_over = asyncio.Event()
    figures: dict[str, float] = {}

    async with aiohttp.ClientSession() as http:
        await logout(http, base, before.refresh_token)
        await eventually(lambda: refused(http, base, before.access_token), what="logout applied")

        async def outage() -> None:
            try:
                await asyncio.sleep(2)
                for auth in auths:
                    auth.kill()
                await eventually(lambda: admin_closed(http, base, admin.access_token), what="503")
                await logout(http, base, during.refresh_token)  # waits in the auth queue
                await asyncio.sleep(3)
                assert await refused(http, base, before.access_token)
                await asyncio.to_thread(auths[0].start)
                back = time.monotonic()
                await eventually(
                    lambda: refused(http, base, during.access_token), what="revoked after return"
                )
                figures["revoked_after_return_s"] = time.monotonic() - back
                await asyncio.sleep(2)
            finally:
                outage_over.set()

        await asyncio.gather(traffic.run(120, until=outage_over), outage())

    print(f"auth outage: {traffic.outcomes}; {figures}; failures: {traffic.failures[:10]}")
    assert traffic.outcomes["failed"] == 0, traffic.failures[:20]
    assert traffic.outcomes["ok"] > 500
