"""Readiness: is every dependency of this process answering right now?

A probe is an async callable that returns when its dependency answers and raises when it does
not. `Readiness` runs all probes concurrently, each bounded by a timeout, and is ready only when
every probe passed in the latest run. The gRPC health service (`ordermesh.grpc`) reports what it
says, so a load balancer never routes to an instance whose broker or store is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import aio_pika.abc
import redis.asyncio

__all__ = ["KeptChannel", "Probe", "Readiness", "amqp_probe", "redis_probe"]

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


class KeptChannel:
    """A channel on `connection` kept for round trips of its own (a probe, passive
    declarations), opened when first needed and again after `discard`. A channel whose round
    trip failed or timed out must be discarded: its late answer must not be taken for the next
    request's. A discarded channel is closed even if it looks closed already, or never opened: a
    robust connection reopens the channels it holds once it reconnects, unless they were
    closed."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection):
        self._connection = connection
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def channel(self) -> aio_pika.abc.AbstractRobustChannel:
        if self._channel is not None and self._channel.is_closed:
            self.discard()
        if self._channel is None:
            # Kept before it is opened: a robust connection holds it from now on and would open
            # it at its next reconnection unless it is discarded (closed), as a failed opening
            # is by its caller.
            self._channel = self._connection.channel(publisher_confirms=False)
            await self._channel
        return self._channel

    def discard(self) -> None:
        lost, self._channel = self._channel, None
        if lost is not None:
            closing = asyncio.get_running_loop().create_task(_close_quietly(lost))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)


async def _close_quietly(channel: aio_pika.abc.AbstractChannel) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await channel.close()


def amqp_probe(connection: aio_pika.abc.AbstractRobustConnection) -> Probe:
    """Passes when the broker answers a round trip on the connection: a Basic.Qos on a channel
    kept for the probe. Opening and closing a channel each time, as it once did, took three
    round trips and a channel process in the broker every `health_interval_s`, in every
    instance."""
    kept = KeptChannel(connection)

    async def probe() -> None:
        try:
            channel = await kept.channel()
            await channel.set_qos(prefetch_count=0)
        except BaseException:
            kept.discard()
            raise

    return probe
