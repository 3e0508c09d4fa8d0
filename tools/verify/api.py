"""The gateway's REST API as the customers and the admin of a verification call it: JSON over
HTTP(S), each client speaking from a loopback address of its own when the gateway is on
loopback (so that the gateway's limits per client address apply to each, as to people at
different addresses), every call bounded in time."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["Answer", "Api", "addresses"]

TIMEOUT_S = 10.0
PATIENCE_S = 60.0


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (a connection or timeout error)
    body: dict[str, Any]
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


def addresses(gateway_url: str, count: int) -> list[str | None]:
    """`count` loopback source addresses (127.0.0.2 on) when the gateway is on loopback, else
    [None]: the machine's own address."""
    host = urlsplit(gateway_url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return [None]
    first = ipaddress.ip_address("127.0.0.2")
    return [str(first + n) for n in range(max(1, count))]


class Api:
    """One client of the gateway at `base_url` (trusting `ca_file`), from `source` (an
    address; None: the default route's)."""

    def __init__(self, base_url: str, *, ca_file: str = "", source: str | None = None):
        self.base_url = base_url.rstrip("/")
        tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file or None)
        if not base_url.startswith("https"):
            tls = False
        connector = aiohttp.TCPConnector(
            ssl=tls, local_addr=(source, 0) if source else None, limit=64
        )
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
        )

    async def close(self) -> None:
        await self._http.close()

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str = "",
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
    ) -> Answer:
        sent = {**({"authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        try:
            async with self._http.request(
                method, self.base_url + path, json=body, headers=sent, params=params
            ) as response:
                text = await response.text()
                try:
                    payload = await response.json(content_type=None) if text else {}
                except ValueError:
                    payload = {"text": text[:300]}
                return Answer(response.status, payload if isinstance(payload, dict) else {})
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(0, {}, f"{type(exc).__name__}: {exc}"[:300])

    async def ok(
        self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """The answer's body; RuntimeError with the status and body if it is not a 200. A call
        the gateway's limits refuse (429) is made again a moment later, for up to
        PATIENCE_S: the verification's own reads keep within the limits a deployment has."""
        deadline = time.monotonic() + PATIENCE_S
        while True:
            answer = await self.call(method, path, body, **kw)
            if answer.status != 429 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if not answer.ok:
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.error or answer.body}")
        return answer.body
