"""Readiness: is every dependency of this process answering right now?

A probe is an async callable that returns when its dependency answers and raises when it does
not. `Readiness` runs all probes concurrently, each bounded by a timeout, and is ready only when
every probe passed in the latest run. The gRPC health service (`chassis.grpc`) reports what it
says, so a load balancer never routes to an instance whose broker or store is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import aio_pika.abc
import redis.asyncio

__all__ = ["Probe", "Readiness", "amqp_probe", "redis_probe"]

Probe = Callable[[], Awaitable[None]]


class Readiness:
    def __init__(self, probes: Mapping[str, Probe] | None = None, *, timeout_s: float = 1.0):
        self._probes = dict(probes or {})
        self._timeout_s = timeout_s
        self._failures: dict[str, str] = {name: "not checked yet" for name in self._probes}

    @property
    def ready(self) -> bool:
        """True if every probe passed in the latest check (and trivially with no probes)."""
        return not self._failures

    @property
    def failures(self) -> Mapping[str, str]:
        """Why each failing probe failed in the latest check, by probe name."""
        return dict(self._failures)

    async def check(self) -> bool:
        names = list(self._probes)
        results = await asyncio.gather(
            *(asyncio.wait_for(self._probes[name](), self._timeout_s) for name in names),
            return_exceptions=True,
        )
        self._failures = {
            name: f"{type(result).__name__}: {result}" if str(result) else type(result).__name__
            for name, result in zip(names, results, strict=True)
            if isinstance(result, BaseException)
        }
        return self.ready


def redis_probe(client: redis.asyncio.Redis) -> Probe:
    async def probe() -> None:
        await client.ping()

    return probe


def amqp_probe(connection: aio_pika.abc.AbstractConnection) -> Probe:
    """Passes when a channel can be opened on the connection, i.e. the broker answers."""

    async def probe() -> None:
        channel = await connection.channel(publisher_confirms=False)
        await channel.close()

    return probe
