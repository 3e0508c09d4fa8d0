"""The live system as the console shows it: the instances the registry lists, the figures
Prometheus keeps, the alerts firing. A part that does not answer leaves a problem on the page;
the rest is shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp
from ordermesh.errors import DomainError
from ordermesh.registry import Instance, Registry
from redis.exceptions import RedisError

from services.console.clients import Prometheus, figures_query
from services.console.domain import AlertView, InstanceView, LiveSystem, Series, live_system

__all__ = ["Alerts", "LiveReader"]

# What reading Prometheus or Alertmanager may fail with: the page says so, and goes on.
READ_FAILURES = (DomainError, aiohttp.ClientError, OSError, ValueError, KeyError, TimeoutError)
BREAKER = "breaker."


class Alerts(Protocol):
    async def alerts(self) -> list[AlertView]: ...


def _view(instance: Instance) -> InstanceView:
    metadata = instance.metadata
    return InstanceView(
        instance_id=instance.instance_id,
        address=instance.address,
        version=instance.version,
        started_at=instance.started_at,
        draining=instance.draining,
        breakers={k.removeprefix(BREAKER): v for k, v in metadata.items() if k.startswith(BREAKER)},
        notes={k: v for k, v in metadata.items() if not k.startswith(BREAKER)},
    )


class LiveReader:
    """Reads the live system at most once per `fresh_s`, however many pages ask."""

    def __init__(
        self,
        registry: Registry,
        *,
        fresh_s: float,
        prometheus: Prometheus | None = None,
        alerts: Alerts | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._registry = registry
        self._fresh_s = fresh_s
        self._prometheus = prometheus
        self._alerts = alerts
        self._clock = clock
        self._live: LiveSystem | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> LiveSystem | None:
        if self._live is not None and self._clock() - self._live.read_at < self._fresh_s:
            return self._live
        return None

    async def read(self) -> LiveSystem:
        if fresh := self._fresh():
            return fresh
        async with self._lock:
            if fresh := self._fresh():
                return fresh
            read_at = self._clock()
            (
                (instances, registry_problem),
                (series, figures_problem),
                (alerts, alerts_problem),
            ) = await asyncio.gather(self._registered(), self._figures(), self._firing())
            problems = [p for p in (registry_problem, figures_problem, alerts_problem) if p]
            self._live = live_system(instances, series, alerts, problems=problems, read_at=read_at)
            return self._live

    async def _registered(self) -> tuple[dict[str, list[InstanceView]], str]:
        try:
            names = await self._registry.services()
            listed = await asyncio.gather(*(self._registry.instances(n) for n in names))
        except (RedisError, OSError) as exc:
            return {}, f"the registry did not answer: {exc}"
        return {
            name: [_view(i) for i in instances]
            for name, instances in zip(names, listed, strict=True)
        }, ""

    async def _figures(self) -> tuple[list[Series], str]:
        if self._prometheus is None:
            return [], "no figures: PROMETHEUS_URL is not set"
        try:
            return await self._prometheus.query(figures_query()), ""
        except READ_FAILURES as exc:
            return [], f"Prometheus did not answer: {type(exc).__name__}: {exc}"

    async def _firing(self) -> tuple[list[AlertView], str]:
        if self._alerts is None:
            return [], ""
        try:
            return await self._alerts.alerts(), ""
        except READ_FAILURES as exc:
            return [], f"the alerts could not be read: {type(exc).__name__}: {exc}"
