"""A REST client of the gateway that remembers which RPCs it reached."""

from __future__ import annotations

from typing import Any

import aiohttp

__all__ = ["Rest"]


class Rest:
    """A REST client of the gateway that remembers which RPCs it reached."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = aiohttp.ClientSession()
        self.reached: set[str] = set()
        # The headers of the last answer.
        self.headers: dict[str, str] = {}

    async def close(self) -> None:
        await self.http.close()

    async def call(
        self,
        rpc: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(
            method, self.base_url + path, json=body, headers=headers
        ) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            assert response.status == expect, f"{method} {path}: {response.status} {payload}"
            assert response.headers["content-type"].startswith("application/json")
            self.headers = {k.lower(): v for k, v in response.headers.items()}
        self.reached.add(rpc)
        return payload
