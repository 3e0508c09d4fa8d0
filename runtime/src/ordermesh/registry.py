"""The service registry in Redis: which instances of which service are alive, and where.

Guarantees:
- an instance is listed only while it heartbeats: each heartbeat extends its lease by `ttl_s`;
  an instance that dies without a word (SIGKILL) drops out of every listing within `ttl_s`;
- a graceful shutdown marks the instance draining first (listed, but to be given no new
  calls), then removes it once its in-flight calls are done (`Registration.drain`/`stop`);
- a registration outlives Redis outages: heartbeats keep trying, and the first one that
  succeeds after an outage registers the instance again in full;
- readers that watch (`Watcher`) keep the last endpoints they saw while Redis is unreachable,
  and hear of changes at once through a pub/sub channel, with a periodic re-read for what
  pub/sub cannot tell (a message missed while disconnected, a lease that ran out);
- an entry that cannot be read (not JSON, a field missing or of the wrong type, an address
  without a port) is skipped and logged, and fields a newer version added are ignored: one bad
  entry never hides the others or stops a watcher.

Layout, under a namespace (default `ordermesh`):
    <ns>:services                       set of service names ever registered
    <ns>:leases:<service>               sorted set: instance id -> lease expiry (unix ms)
    <ns>:instance:<service>:<id>        JSON of the Instance, expiring with its lease
    <ns>:changes                        pub/sub channel: the name of a service that changed
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from ordermesh.logging import get_logger
from ordermesh.watch import RedisNotices, follow

__all__ = ["Instance", "Registration", "Registry", "Watcher"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Instance:
    service: str
    instance_id: str
    # host:port of its gRPC server.
    address: str
    version: str = ""
    started_at: float = field(default_factory=time.time)
    # True from the moment it began to shut down: it finishes what it has, takes nothing new.
    draining: bool = False
    # The port of its Prometheus metrics (`/metrics` on its host); 0 if it serves none.
    metrics_port: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "metadata": dict(self.metadata)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Instance:
        """The instance an entry describes; ValueError naming what is wrong with it. Fields
        this version does not know are ignored (a newer version may have written them)."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"an entry is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for name in ("service", "instance_id", "address"):
            if not isinstance(values.get(name), str) or not values[name]:
                raise ValueError(f"{name} is missing or not a string")
        host, _, port = values["address"].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address {values['address']!r} is not host:port")
        for name, kind in (
            ("version", str),
            ("started_at", int | float),
            ("draining", bool),
            ("metrics_port", int),
        ):
            if name in values and not isinstance(values[name], kind):
                raise ValueError(f"{name} {values[name]!r} is of the wrong type")
        metadata = values.get("metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise ValueError("metadata is not an object of strings")
        return cls(**values)


class Registry:
    """Reads and writes the registry; every call may raise RedisError (Redis unreachable)."""

    def __init__(self, redis_url: str, *, namespace: str = "ordermesh", timeout_s: float = 1.0):
        self._redis = aioredis.from_url(
            redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self._ns = namespace

    @property
    def changes_channel(self) -> str:
        return f"{self._ns}:changes"

    def _leases(self, service: str) -> str:
        return f"{self._ns}:leases:{service}"

    def _key(self, service: str, instance_id: str) -> str:
        return f"{self._ns}:instance:{service}:{instance_id}"

    async def close(self) -> None:
        await self._redis.aclose()

    async def put(self, instance: Instance, *, ttl_s: float) -> None:
        """Registers or renews `instance` for `ttl_s`, and tells the watchers."""
        expires_ms = int((time.time() + ttl_s) * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"{self._ns}:services", instance.service)
            pipe.zadd(self._leases(instance.service), {instance.instance_id: expires_ms})
            pipe.set(
                self._key(instance.service, instance.instance_id),
                instance.to_json(),
                px=int(ttl_s * 1000),
            )
            pipe.publish(self.changes_channel, instance.service)
            await pipe.execute()

    async def renew(self, instance: Instance, *, ttl_s: float) -> bool:
        """Extends a registration's lease; False if it had run out (register it again)."""
        expires_ms = int((time.time() + ttl_s) * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.pexpire(self._key(instance.service, instance.instance_id), int(ttl_s * 1000))
            pipe.zadd(self._leases(instance.service), {instance.instance_id: expires_ms}, xx=True)
            still_there, _ = await pipe.execute()
        return bool(still_there)

    async def remove(self, instance: Instance) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._leases(instance.service), instance.instance_id)
            pipe.delete(self._key(instance.service, instance.instance_id))
            pipe.publish(self.changes_channel, instance.service)
            await pipe.execute()

    async def services(self) -> list[str]:
        names = await self._redis.smembers(f"{self._ns}:services")
        return sorted(str(n) for n in names)

    async def instances(self, service: str) -> list[Instance]:
        """The instances of `service` whose lease runs, ordered by instance id."""
        now_ms = int(time.time() * 1000)
        leases = self._leases(service)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(leases, now_ms, "+inf")
            pipe.zremrangebyscore(leases, "-inf", now_ms - 1)  # the leases that ran out
            ids, _ = await pipe.execute()
        if not ids:
            return []
        raws = await self._redis.mget([self._key(service, str(i)) for i in ids])
        found = []
        for id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            try:
                found.append(Instance.from_json(raw))
            except ValueError as exc:
                log.warning(
                    "registry entry skipped: it cannot be read",
                    service=service,
                    instance_id=str(id)[:100],
                    error=str(exc),
                )
        return sorted(found, key=lambda i: i.instance_id)

    def pubsub(self) -> aioredis.client.PubSub:
        return self._redis.pubsub()


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels `tasks` and waits for them, boundedly: a library call that swallowed its
    cancellation (redis-py's timeouts on 3.11 can) must not hold up a shutdown."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)


class Registration:
    """One instance's entry: registered by `start`, renewed every `interval_s`, marked
    draining by `drain`, removed by `stop`; Redis outages are waited out, never fatal."""

    def __init__(
        self,
        registry: Registry,
        instance: Instance,
        *,
        ttl_s: float = 6.0,
        interval_s: float = 2.0,
        metadata: Callable[[], Mapping[str, str]] | None = None,
        heartbeats: Counter | None = None,
    ):
        """`metadata()`, read at each heartbeat, is published with the instance when it
        changes (the state of its circuit breakers, for `make status`). `heartbeats` counts
        each heartbeat by result: renewed, registered (in full) or failed."""
        if interval_s >= ttl_s:
            raise ValueError(f"heartbeat interval {interval_s} s is not shorter than ttl {ttl_s} s")
        self.registry = registry
        self.instance = instance
        self._ttl_s = ttl_s
        self._interval_s = interval_s
        self._registered = False
        self._metadata = metadata
        self._heartbeats = heartbeats
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._beat()
        heartbeats = follow(
            self._beat,
            refresh_s=self._interval_s,
            wait_first=True,
            name="registry-heartbeat",
            failed="heartbeat failed; heartbeats keep trying",
        )
        self._task = asyncio.create_task(heartbeats, name="registry-heartbeat")

    async def drain(self) -> None:
        """Tells the watchers this instance takes no new calls (it stays listed)."""
        self.instance = replace(self.instance, draining=True)
        try:
            await self.registry.put(self.instance, ttl_s=self._ttl_s)
        except RedisError as exc:
            log.warning("could not mark this instance draining", error=str(exc))
        else:
            log.info("draining")

    async def stop(self) -> None:
        if self._task is not None:
            await _cancelled([self._task])
            self._task = None
        try:
            await self.registry.remove(self.instance)
        except RedisError as exc:
            log.warning("could not deregister; the lease will run out", error=str(exc))

    async def _beat(self) -> None:
        metadata = dict(self._metadata()) if self._metadata is not None else {}
        if metadata != dict(self.instance.metadata):
            self.instance = replace(self.instance, metadata=metadata)
            self._registered = False  # written in full, and announced
        try:
            if self._registered and await self.registry.renew(self.instance, ttl_s=self._ttl_s):
                self._count("renewed")
                return
            await self.registry.put(self.instance, ttl_s=self._ttl_s)
            self._count("registered")
            if not self._registered:
                log.info("registered", address=self.instance.address)
            self._registered = True
        except RedisError as exc:
            self._count("failed")
            if self._registered:
                log.warning("registry unreachable; heartbeats keep trying", error=str(exc))
            self._registered = False

    def _count(self, result: str) -> None:
        if self._heartbeats is not None:
            self._heartbeats.labels(result).inc()


Listener = Callable[[str, Sequence[Instance]], Awaitable[None] | None]


class Watcher:
    """The live instances of some services, kept current; the last known while Redis is down.

    `on_change(service, instances)` is called (and awaited if it returns an awaitable) each
    time the instances of a watched service differ from the last ones seen.

    A Redis that comes back after an outage may have lost its data (a restart without
    persistence): for `grace_s` after that (make it the registrations' TTL, by when every live
    instance has heartbeated again), instances are added but none is dropped.
    """

    def __init__(
        self,
        registry: Registry,
        services: Sequence[str],
        *,
        on_change: Listener | None = None,
        refresh_s: float = 1.0,
        grace_s: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._registry = registry
        self._services = list(services)
        self._on_change = on_change
        self._refresh_s = refresh_s
        self._grace_s = grace_s
        self._clock = clock
        self._known: dict[str, list[Instance]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Each change announced; the subscription itself is none (`start` has just read).
        self._notices = RedisNotices(
            registry.pubsub, registry.changes_channel, subscribed_is_notice=False
        )
        # Set while subscribed to the changes channel (cleared when Redis is lost).
        self.listening = self._notices.listening
        self._reachable = True
        self._keep_until = float("-inf")

    def instances(self, service: str) -> list[Instance]:
        """The last instances seen for `service` (empty before the first read)."""
        return list(self._known.get(service, ()))

    async def start(self) -> None:
        """Reads every service once (if Redis answers), then keeps watching."""
        await self.refresh()
        watching = follow(
            self.refresh,
            notices=self._notices,
            refresh_s=self._refresh_s,
            wait_first=True,
            name="registry-watcher",
            # A listener's failure must not end the watch. Redis's own outages are logged by
            # `refresh` (once each), not again as lost notices.
            failed="registry watch failed; it goes on",
            services=self._services,
        )
        self._tasks = [asyncio.create_task(watching, name="registry-watcher")]

    async def stop(self) -> None:
        await _cancelled(self._tasks)
        self._tasks = []

    async def refresh(self) -> bool:
        """Reads every watched service; False (and nothing changed) if Redis did not answer."""
        try:
            found = {s: await self._registry.instances(s) for s in self._services}
        except RedisError as exc:
            if self._reachable:
                log.warning("registry unreachable; keeping the last endpoints", error=str(exc))
            self._reachable = False
            return False
        if not self._reachable:
            log.info("registry reachable again; keeping every known endpoint for a while")
            self._reachable = True
            self._keep_until = self._clock() + self._grace_s
        if self._clock() < self._keep_until:
            found = {s: _merged(self._known.get(s, []), found[s]) for s in found}
        for service, instances in found.items():
            if self._known.get(service) != instances:
                self._known[service] = instances
                if self._on_change is not None:
                    result = self._on_change(service, instances)
                    if inspect.isawaitable(result):
                        await result
        return True


def _merged(known: Sequence[Instance], found: Sequence[Instance]) -> list[Instance]:
    """What was found, and what was known and is not found (by instance id)."""
    ids = {i.instance_id for i in found}
    kept = [i for i in known if i.instance_id not in ids]
    return sorted([*found, *kept], key=lambda i: i.instance_id)
