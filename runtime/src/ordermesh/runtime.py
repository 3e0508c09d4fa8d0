"""One call that gives a service process its store, broker, outbox relay, consumers and health.

    settings = config.load(InventorySettings)
    async with Runtime.open(settings, collections=store.COLLECTIONS) as runtime:
        inventory = Inventory(runtime.store)
        await runtime.consume(consumers.COMMANDS, consumers.handlers(inventory))
        await serve(
            settings,
            [api.service(inventory)],
            readiness=runtime.readiness(),
            authenticator=await runtime.token_verifier(ISSUER),
            notes=runtime.notes,
            metrics=runtime.metrics,
        )

which is what `ordermesh.defaults.run_service` does for every service with a store and a broker.

What it guarantees:
- the store is opened (collections and indexes created) before anything else, the broker
  connected, the outbox relay started, then the consumers, in that order;
- on the way out, consumers stop first (the messages they took finish, the rest go back to
  the broker), then background tasks, then the relay, then what was registered with
  `on_close`, then the broker and the store close;
- readiness probes the store and the broker, so health turns NOT_SERVING when either is gone;
- its metrics (`ordermesh.metrics`, served by `serve(metrics=runtime.metrics)`) count what the
  relay and the consumers do and show its breakers; the outbox backlog and the dead-letter
  queues of its subscriptions are sampled every `metrics_interval_s`;
- what the store only keeps for a while is pruned every `prune_interval_s`: sent outbox
  messages after `outbox_retention_s`, inbox marks after `dedup_window_s`, the deduplication
  window: a message that comes again later than that would be applied again, so it must be
  far longer than any redelivery (retry steps take seconds to minutes; the default is 7 days).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import aio_pika.abc
import aio_pika.exceptions
import redis.asyncio as aioredis
from pydantic import Field

from ordermesh import config
from ordermesh.broker import Broker
from ordermesh.config import ServiceSettings
from ordermesh.consumer import Consumer, Handler
from ordermesh.events import Message
from ordermesh.faults import is_infrastructure
from ordermesh.health import KeptChannel, Probe, Readiness, amqp_probe
from ordermesh.logging import get_logger
from ordermesh.metrics import Metrics
from ordermesh.operations import OPERATOR_ACTIONS, Operations
from ordermesh.outbox import OutboxRelay
from ordermesh.policy import PolicyFeed, PolicyFollower, export_metrics, verify_key
from ordermesh.registry import Registry
from ordermesh.store import Collection, Store, StoreError, open_store
from ordermesh.switches import Switches
from ordermesh.tls import MutualTls
from ordermesh.tokens import KeyIssuer, KeySet, TokenVerifier, grpc_jwks_source
from ordermesh.topology import Subscription
from ordermesh.upstream import Upstream
from ordermesh.watch import follow

__all__ = ["RUNTIME_COLLECTIONS", "AuthenticatedSettings", "BackboneSettings", "Runtime"]

log = get_logger(__name__)
# The collections the runtime keeps in every service's store besides the service's own: the
# operators' audit trail (ordermesh.operations). The schema step makes them too (services.schema).
RUNTIME_COLLECTIONS = (OPERATOR_ACTIONS,)
# Rows deleted per transaction while pruning, so that no prune holds the store for long.
PRUNE_BATCH = 1000


# How often a service reads the edge policy's stamp when no notice came (see `revoked`).
SERVICE_POLICY_REFRESH_S = 5.0


class BackboneSettings(ServiceSettings):
    """What a service that keeps state and speaks on the event backbone needs."""

    # A node's URL, or the URLs of a cluster's nodes joined by commas.
    rabbitmq_url: str
    # Members of each quorum queue this service creates (0: RabbitMQ's default, every node of
    # the cluster then). Fixed at creation: set it before the queues exist.
    rabbitmq_quorum_size: int = Field(default=0, ge=0)
    # sqlite:///<path> (one file per service, shared by its instances) or mongodb://...
    store_url: str
    # The MongoDB database; defaults to the service name.
    store_database: str = ""
    # PostgreSQL connections each instance may open: instances x services x this must stay
    # below the server's max_connections (docs/capacity.md).
    store_pool_size: int = Field(default=10, ge=1)
    # How often the outbox relay reads the pending rows' index anyway. Its own instance's
    # commits wake it at once, and the others' as soon as the store tells (Store.watching:
    # PostgreSQL and SQLite; MongoDB only by this poll, so lower it for several instances on
    # MongoDB). At 0.1 s the poll was a third of an idle service's CPU.
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    # Retention (see the module doc); the deduplication window is at least an hour.
    outbox_retention_s: float = Field(default=86400.0, ge=0)
    dedup_window_s: float = Field(default=7 * 86400.0, ge=3600)
    prune_interval_s: float = Field(default=3600.0, gt=0)
    # How long a starting instance waits for its store and broker to answer, then gives up.
    startup_wait_s: float = Field(default=120.0, ge=0)
    # How often the outbox backlog and the dead-letter queues are sampled for the metrics: as
    # often as Prometheus scrapes (monitoring/prometheus.yml, 5 s), of which only the sample
    # before each scrape is read (every 2 s cost every idle instance a store read and two
    # broker round trips per subscription that no scrape saw).
    metrics_interval_s: float = Field(default=5.0, gt=0)
    # The auth service's public policy key (ordermesh.policy): with the registry's Redis, the
    # sessions it revoked are refused by this service's token checks too (`Runtime.revoked`).
    # Empty: only the gateway refuses them.
    edge_policy_verify_key: str = ""


class AuthenticatedSettings(BackboneSettings):
    """A service whose RPCs verify the caller's access token."""

    # Where the token issuer answers while the registry does not is its address variable
    # (`<ISSUER>_SERVICE_ADDR`, ordermesh.config.address_of), required by `token_verifier`.
    jwt_issuer: str = "ordermesh"
    jwt_audience: str = "ordermesh"


async def _waiting_for(what: str, attempt: Callable[[], Awaitable[None]], within_s: float) -> None:
    """`attempt()`, again after each infrastructure fault (doubling waits from 0.2 s to 5 s),
    for up to `within_s`; other errors, and the last fault, are raised."""
    deadline = time.monotonic() + within_s
    wait_s = 0.2
    while True:
        try:
            await attempt()
            return
        except Exception as exc:
            if not is_infrastructure(exc) or time.monotonic() + wait_s > deadline:
                raise
            log.warning("waiting for a dependency", dependency=what, error=repr(exc)[:200])
        await asyncio.sleep(wait_s)
        wait_s = min(wait_s * 2, 5.0)


class Runtime:
    def __init__(self, settings: BackboneSettings, store: Store, broker: Broker, metrics: Metrics):
        self.settings = settings
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self.ledger = metrics.ledger
        # The fault switches an operator turns on while it runs (ordermesh.switches): off unless
        # FAULT_FLAGS_FILE names a file that turns one on.
        self.switches = Switches(settings.fault_flags_file, metrics=metrics.switches)
        metrics.watch_breakers(
            lambda: {u.service: u.breaker.current_state for u in self._upstreams.values()}
        )
        self._consumers: list[Consumer] = []
        # One per service called, shared by whoever calls it (one registry watch, one breaker).
        self._upstreams: dict[str, Upstream] = {}
        # What an operator should know of this instance, published with its registration.
        self.noted: dict[str, str] = {}
        self._background: list[asyncio.Task[None]] = []
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self._revoked: Callable[[str], bool] | None = None
        # The operator's view and actions over its messages (the operator API serves them).
        self.operations = Operations(
            service=settings.service_name,
            store=store,
            broker=broker,
            consumers=lambda: [consumer.name for consumer in self._consumers],
            dead_letter_queues=lambda: list(
                dict.fromkeys(c.subscription.dead_letter_queue for c in self._consumers)
            ),
            instance=settings.instance_id,
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: BackboneSettings, *, collections: Sequence[Collection] = ()
    ) -> AsyncIterator[Runtime]:
        store = open_store(
            settings.store_url,
            database=settings.store_database or settings.service_name,
            pool_size=settings.store_pool_size,
        )
        # Started beside what it needs (compose, Kubernetes), a service waits for it.
        await _waiting_for(
            "store",
            lambda: store.open([*collections, *RUNTIME_COLLECTIONS]),
            settings.startup_wait_s,
        )
        broker = Broker(
            settings.rabbitmq_url,
            name=settings.instance_id,
            quorum_size=settings.rabbitmq_quorum_size,
        )
        runtime = cls(settings, store, broker, Metrics())
        relay = OutboxRelay(
            store,
            broker,
            owner=settings.instance_id,
            ledger=runtime.ledger,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        try:
            await _waiting_for("broker", broker.connect, settings.startup_wait_s)
            relay.start()
            runtime.background(runtime._prune_forever(), name="prune")
            runtime.background(runtime._sample_forever(), name="metrics-samples")
            runtime.background(runtime.switches.follow(), name="fault-switches")
            yield runtime
        finally:
            for consumer in reversed(runtime._consumers):
                await consumer.stop()
            for task in runtime._background:
                task.cancel()
            await asyncio.gather(*runtime._background, return_exceptions=True)
            await relay.stop()
            for stop in reversed(runtime._stoppers):
                await stop()
            await broker.close()
            await store.close()

    async def consume(
        self, subscription: Subscription, handlers: Mapping[type[Message], Handler]
    ) -> Consumer:
        """Declares a subscription's queues and consumes them until the runtime closes."""
        consumer = Consumer(
            subscription,
            handlers,
            store=self.store,
            broker=self.broker,
            instance=self.settings.instance_id,
            ledger=self.ledger,
            switches=self.switches,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    def background(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Runs `work` until the runtime closes; it is cancelled after the consumers stop and
        before the relay does, so what it commits still leaves."""
        self._background.append(asyncio.create_task(work, name=name))

    async def prune(self) -> int:
        """Deletes what is past retention now; returns how many rows."""
        now = time.time()
        settings = self.settings
        deleted = 0
        while True:
            batch = await self.store.prune(
                sent_before=now - settings.outbox_retention_s,
                handled_before=now - settings.dedup_window_s,
                limit=PRUNE_BATCH,
            )
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted

    async def _prune_forever(self) -> None:
        async def prune() -> None:
            try:
                deleted = await self.prune()
            except StoreError:
                log.warning("could not prune the store now; trying at the next interval")
                return
            if deleted:
                log.info("pruned what is past retention", rows=deleted)

        await follow(
            prune,
            refresh_s=self.settings.prune_interval_s,
            name="prune",
            failed="pruning the store failed; trying at the next interval",
        )

    async def sample_outbox(self) -> None:
        """Sets the metrics of the outbox backlog: how many wait, and since when."""
        pending = await self.store.count_pending()
        oldest = await self.store.pending(1) if pending else []
        self.metrics.observe_outbox(
            pending, oldest[0].message.envelope.occurred_at.timestamp() if oldest else None
        )

    async def sample_dead_letters(self, channel: aio_pika.abc.AbstractRobustChannel) -> None:
        """Sets the metrics of this instance's subscriptions' queues: each work queue's depth
        and consumers, each dead-letter queue's depth (one passive declaration each)."""
        for consumer in self._consumers:
            # Not robust: a robust channel answers a passive declaration of a queue it knows
            # from its cache, with the count of the first time.
            work = await channel.declare_queue(consumer.name, passive=True, robust=False)
            self.metrics.queue_messages.labels(consumer.name).set(
                work.declaration_result.message_count or 0
            )
            self.metrics.queue_consumers.labels(consumer.name).set(
                work.declaration_result.consumer_count or 0
            )
            queue = consumer.subscription.dead_letter_queue
            declared = await channel.declare_queue(queue, passive=True, robust=False)
            count = declared.declaration_result.message_count
            self.metrics.dead_letters.labels(queue).set(count or 0)

    async def _sample_forever(self) -> None:
        """Samples the store and the broker apart, each bounded: a broker that blocks this
        connection (a memory alarm stops reading from publishers) must not stop the outbox's
        figures, which are then what tells of it."""
        interval = self.settings.metrics_interval_s
        kept = KeptChannel(self.broker.connection)
        failing: set[str] = set()

        def failed(what: str, exc: BaseException) -> None:
            # The gauges keep their last values; the outage shows in health and the rest.
            if what not in failing:
                log.warning("metrics not sampled now", source=what, error=repr(exc)[:200])
            failing.add(what)

        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    await self.sample_outbox()
                failing.discard("store")
            except (StoreError, TimeoutError) as exc:
                failed("store", exc)
            try:
                async with asyncio.timeout(interval):
                    await self.sample_dead_letters(await kept.channel())
                failing.discard("broker")
            except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
                kept.discard()  # another next time: this one may still wait for an answer
                failed("broker", exc)

    def on_close(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Runs `stop` when the runtime closes, after the consumers and the relay have stopped."""
        self._stoppers.append(stop)

    async def upstream(self, service: str, *, fallback: str, timeout_s: float = 2.0) -> Upstream:
        """Calls to another service's instances, found in the registry when REDIS_URL is set,
        else at `fallback` (see ordermesh.upstream), over mutual TLS when GRPC_TLS_* are set
        (ordermesh.tls); stopped when the runtime closes. Asked again for the same service (the
        token verifier and a client of the issuer), the same one."""
        known = self._upstreams.get(service)
        if known is not None:
            if (known.fallback, known.timeout_s) != (fallback, timeout_s):
                raise ValueError(f"{service} is already called with other settings")
            return known
        registry = Registry(self.settings.redis_url) if self.settings.redis_url else None
        upstream = Upstream(
            service,
            fallback=fallback,
            registry=registry,
            timeout_s=timeout_s,
            tls=MutualTls.of(self.settings),
        )
        await upstream.start()
        if registry is not None:
            self.on_close(registry.close)
        self.on_close(upstream.stop)  # runs before the registry closes (reverse order)
        self._upstreams[service] = upstream
        return upstream

    def notes(self) -> dict[str, str]:
        """For `serve(notes=...)`: the state of each circuit breaker (`breaker.<destination>`:
        closed, open or half-open) and what the service noted in `noted`."""
        return {
            **{f"breaker.{u.service}": u.breaker.current_state for u in self._upstreams.values()},
            **self.noted,
        }

    async def token_verifier(self, issuer: KeyIssuer) -> TokenVerifier:
        """Verifies access tokens against the keys `issuer` publishes (see ordermesh.tokens),
        fetched from any of its instances.

        The settings must be AuthenticatedSettings.
        """
        settings = self.settings
        if not isinstance(settings, AuthenticatedSettings):
            raise TypeError(f"{type(settings).__name__} is not AuthenticatedSettings")
        fallback = config.address_of(issuer.service)
        upstream = await self.upstream(issuer.service, fallback=fallback)
        keys = KeySet(grpc_jwks_source(issuer, upstream))
        # Known before the instance serves: its first calls must not fail for want of them.
        await _waiting_for("the token issuer's keys", keys.load, settings.startup_wait_s)
        return TokenVerifier(
            keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            revoked=self.revoked(),
        )

    def revoked(self) -> Callable[[str], bool]:
        """Whether a session is revoked, by the edge policy followed from the registry's Redis
        (ordermesh.policy), for a TokenVerifier; what it holds is exported with the instance's
        metrics. Followed once per runtime."""
        if self._revoked is not None:
            return self._revoked
        settings = self.settings
        if not (settings.redis_url and settings.edge_policy_verify_key):
            log.warning("revoked sessions are refused by the gateway only: no policy to follow")
            return lambda _: False
        redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0)
        self.on_close(redis.aclose)
        # Told of each change (Redis pub/sub, read again on each new subscription): the poll is
        # for a notice lost while subscribed, so a service's looks every 5 s, not the
        # gateway's 1 s (a wake-up a second in every idle instance). After Redis restarts, a
        # service subscribes again within half a second and reads the policy then
        # (ordermesh.watch.RESUBSCRIBE_S): a logout meanwhile is not left to the 5 s poll.
        follower = PolicyFollower(
            PolicyFeed(redis),
            verify_key(settings.edge_policy_verify_key),
            refresh_s=SERVICE_POLICY_REFRESH_S,
        )
        export_metrics(follower, self.metrics.registry)
        self.background(follower.run(), name="follow edge policy")
        self._revoked = follower.is_revoked
        return self._revoked

    def readiness(self, extra: Mapping[str, Probe] | None = None) -> Readiness:
        async def store_probe() -> None:
            await self.store.ping()

        probes: dict[str, Any] = {
            "store": store_probe,
            "rabbitmq": amqp_probe(self.broker.connection),
            **(extra or {}),
        }
        return Readiness(probes)
