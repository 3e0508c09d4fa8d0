"""Prometheus metrics of one process, served at `/metrics` on the address it registers.

What an instance measures (its `Metrics`), every series labelled by what Prometheus adds from
the registry (service, instance_id):
- RPCs, per method: `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}` (codes
  by their gRPC names: OK, NOT_FOUND, ...) and `grpc_server_handling_seconds` (a histogram),
  the names of the go-grpc-prometheus convention that dashboards know;
- the message ledger (`ordermesh.ledger`): `ordermesh_messages_total{type, stage, queue}`, the
  deliveries of each queue by outcome among them;
- the outbox: rows pending and the age of the oldest (`ordermesh_outbox_pending`,
  `ordermesh_outbox_oldest_age_seconds`), and the messages in the dead-letter queue of each
  subscription (`ordermesh_dead_letter_queue_messages{queue}`), sampled by `ordermesh.runtime`;
- each circuit breaker's state: `ordermesh_circuit_breaker_state{destination, state}`, 1 for
  the current state and 0 for the others;
- sagas: `ordermesh_sagas_ended_total{saga, outcome}`, `ordermesh_saga_duration_seconds{saga,
  outcome}` from start to end, `ordermesh_saga_step_duration_seconds{saga, step}` from a
  step's command to its reply;
- registry heartbeats: `ordermesh_registry_heartbeats_total{result}` (renewed, registered,
  failed);
- fault switches (`ordermesh.switches`): `ordermesh_fault_switch_active{switch}`, 1 while on,
  and the failures they injected, `ordermesh_fault_injections_total{switch}`;
- the garbage collector (`ordermesh.garbage`): the objects kept out of its passes
  (`ordermesh_gc_frozen_objects`: what the process built to start) and how long each pass
  stopped the process (`ordermesh_gc_pause_seconds{generation}`, while it serves).

The hot paths pay one increment or one histogram observation; gauges are sampled, and the
breakers read, when Prometheus scrapes or the runtime samples, never per message.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import grpc
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ordermesh.garbage import Collections
from ordermesh.identity import INTERNAL_HEADER
from ordermesh.ledger import Ledger

__all__ = [
    "BREAKER_STATES", "Metrics", "MetricsServer", "RpcMetrics", "SagaMetrics", "SwitchMetrics",
]  # fmt: skip

# Latency buckets from 1 ms to 10 s: a call on this system takes from a millisecond (a read) to
# seconds (a saga step behind a broker outage).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_STATES = ("closed", "open", "half-open")


class RpcMetrics:
    """Counts and times the calls a server handles."""

    def __init__(self, registry: CollectorRegistry):
        self._handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code",
            ["grpc_service", "grpc_method", "grpc_code"], registry=registry,
        )  # fmt: skip
        self._seconds = Histogram(
            "grpc_server_handling_seconds", "Time the server took to answer an RPC",
            ["grpc_service", "grpc_method"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip

    def declare(self, method: str) -> None:
        """Makes `method`'s series exist at 0 before its first call: a counter that appears at
        its first value has no increase to show (Prometheus' `rate` needs the 0)."""
        service, _, name = method.lstrip("/").partition("/")
        self._handled.labels(service, name, grpc.StatusCode.OK.name)
        self._seconds.labels(service, name)

    def recorder(self, method: str) -> Callable[[grpc.StatusCode, float], None]:
        """What records one call of `method` (`/package.Service/Method`): resolved once per
        method, so that a call pays a lookup of its code and two updates."""
        service, _, name = method.lstrip("/").partition("/")
        seconds = self._seconds.labels(service, name)
        handled: dict[grpc.StatusCode, Counter] = {}

        def record(code: grpc.StatusCode, elapsed_s: float) -> None:
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = self._handled.labels(service, name, code.name)
            counter.inc()
            seconds.observe(elapsed_s)

        return record


class SagaMetrics:
    """How sagas end and how long they and their steps take."""

    def __init__(self, registry: CollectorRegistry):
        self.ended = Counter(
            "ordermesh_sagas_ended", "Sagas that ended (or need an operator), by outcome",
            ["saga", "outcome"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "ordermesh_saga_duration_seconds", "Time from a saga's start to its end",
            ["saga", "outcome"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self.step_duration = Histogram(
            "ordermesh_saga_step_duration_seconds",
            "Time from a step's command (or compensation) to the participant's reply",
            ["saga", "step"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip


class SwitchMetrics:
    """Which fault switches are on in this process, and the failures they injected."""

    def __init__(self, registry: CollectorRegistry):
        self.active = Gauge(
            "ordermesh_fault_switch_active", "1 while a fault switch is on in this process",
            ["switch"], registry=registry,
        )  # fmt: skip
        self.injected = Counter(
            "ordermesh_fault_injections", "Failures a fault switch injected, by switch",
            ["switch"], registry=registry,
        )  # fmt: skip


class _Breakers(Collector):
    def __init__(self) -> None:
        self.states: Callable[[], Mapping[str, str]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ordermesh_circuit_breaker_state",
            "1 for each circuit breaker's current state (closed, open, half-open), 0 otherwise",
            labels=["destination", "state"],
        )
        for destination, current in sorted(self.states().items()):
            for state in BREAKER_STATES:
                family.add_metric([destination, state], float(state == current))
        yield family


class Metrics:
    """Everything one process measures, in its own registry (see the module doc)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ledger = Ledger(self.registry)
        self.rpc = RpcMetrics(self.registry)
        self.sagas = SagaMetrics(self.registry)
        self.switches = SwitchMetrics(self.registry)
        self.heartbeats = Counter(
            "ordermesh_registry_heartbeats", "Heartbeats to the registry, by result",
            ["result"], registry=self.registry,
        )  # fmt: skip
        self.outbox_pending = Gauge(
            "ordermesh_outbox_pending", "Outbox messages committed and not yet published",
            registry=self.registry,
        )  # fmt: skip
        self.outbox_oldest_age = Gauge(
            "ordermesh_outbox_oldest_age_seconds",
            "How long the oldest pending outbox message has waited (0 when none waits)",
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "ordermesh_dead_letter_queue_messages",
            "Messages in the dead-letter queue of each subscription this instance consumes",
            ["queue"], registry=self.registry,
        )  # fmt: skip
        self.queue_messages = Gauge(
            "ordermesh_queue_messages",
            "Messages waiting in each queue this instance consumes (ready, not yet delivered)",
            ["queue"],
            registry=self.registry,
        )
        self.queue_consumers = Gauge(
            "ordermesh_queue_consumers",
            "Consumers subscribed to each queue this instance consumes, every instance's",
            ["queue"],
            registry=self.registry,
        )
        self.collections = Collections()
        self.registry.register(self.collections)
        self._breakers = _Breakers()
        self.registry.register(self._breakers)

    def watch_breakers(self, states: Callable[[], Mapping[str, str]]) -> None:
        """`states()` (destination -> closed, open or half-open) is read at each scrape."""
        self._breakers.states = states

    def observe_outbox(self, pending: int, oldest_at: float | None) -> None:
        """The outbox's backlog: how many wait, and since when (Unix time) the oldest does."""
        self.outbox_pending.set(pending)
        self.outbox_oldest_age.set(max(0.0, time.time() - oldest_at) if oldest_at else 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """`/metrics` over HTTP on the event loop (aiohttp), at `host:port` (0: a free port), and
    the instance's other HTTP `routes` (its GraphQL subgraph's `/graphql`) and `apps`, each an
    application of its own mounted at its prefix (the operator console's `/console`); with
    `serving`, `/healthz`: 200 while it says the instance serves (its gRPC health), else 503,
    for what checks the HTTP routes (the gateway's subgraph clusters).

    With `internal_token`, a request to one of the `apps` without that secret in
    INTERNAL_HEADER (the gateway adds it on its way there) is refused (401) before the app
    sees it: the instance's port is no door around the gateway."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int = 0,
        routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None,
        serving: Callable[[], bool] | None = None,
        apps: Mapping[str, web.Application] | None = None,
        internal_token: str = "",
    ):
        self._metrics = metrics
        self._host = host
        self._port = port
        self._routes = dict(routes or {})
        self._apps = dict(apps or {})
        self._internal_token = internal_token.encode()
        self._serving = serving
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application(middlewares=[self._from_the_gateway] if self._apps else [])
        app.router.add_get("/metrics", self._scrape)
        if self._serving is not None:
            app.router.add_get("/healthz", self._health)
        for path, handler in self._routes.items():
            app.router.add_route("*", path, handler)
        for prefix, sub in self._apps.items():
            app.add_subapp(prefix, sub)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_port=False)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _from_the_gateway(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._internal_token and any(
            request.path == prefix or request.path.startswith(f"{prefix}/") for prefix in self._apps
        ):
            given = request.headers.get(INTERNAL_HEADER, "").encode()
            if not hmac.compare_digest(given, self._internal_token):
                return web.Response(
                    status=401,
                    text="not through the gateway\n",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
                )
        return await handler(request)

    async def _health(self, _: web.Request) -> web.Response:
        assert self._serving is not None
        if self._serving():
            return web.Response(text="SERVING\n")
        return web.Response(status=503, text="NOT_SERVING\n")

    async def _scrape(self, _: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
