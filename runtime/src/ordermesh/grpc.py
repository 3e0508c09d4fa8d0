"""The gRPC server every service runs: one `serve()`, the same edges everywhere.

What every service gets from it:
- the standard health service (`grpc.health.v1.Health`), reporting SERVING only while every
  readiness probe passes (`ordermesh.health`), re-checked every `health_interval_s`, and
  NOT_SERVING from the moment shutdown begins; under the name "liveness" (`LIVENESS`), SERVING
  from the start of the server to its shutdown, whatever its dependencies say (what a
  liveness probe asks: restarting a process does not bring its broker back);
- with GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA set, mutual TLS: only clients with a
  certificate from that CA connect (`ordermesh.tls`);
- server reflection, so grpcurl and other tools can list and call the services;
- a correlation id for each call, taken from the `x-correlation-id` metadata (or Envoy's
  `x-request-id`) if it is a safe bounded token, else created (and the refusal logged), as
  every edge does (`ordermesh.correlation.adopt`), and set in `ordermesh.correlation` for the
  handler's duration;
- the access level each RPC declares in its contract, enforced before the handler runs, and
  the verified caller in `ordermesh.identity` for the handler's duration;
- the bounds of each request field and the defined values of its enums (`ordermesh.bounds`),
  checked before the handler runs: INVALID_ARGUMENT naming the field;
- the RPC fault switches (`ordermesh.switches`: `rpc-latency`, `rpc-errors`) applied once both
  checks passed: the call answered late, or failed with the switch's status unhandled;
- failures answered as `ordermesh.failures` says (the GraphQL subgraphs answer alike): one table
  (`STATUS_OF_ERROR`) that turns domain errors into status codes with their message; a store
  or broker that cannot do the work now is UNAVAILABLE, a transaction that lost every retry to
  concurrent ones ABORTED (`ordermesh.faults`); any other exception is logged and answered
  INTERNAL without its details;
- graceful shutdown on SIGTERM or SIGINT: health goes NOT_SERVING, new calls are refused,
  in-flight calls get `shutdown_grace_s` to finish;
- with `REDIS_URL` set, registration in the registry (`ordermesh.registry`) once serving, with
  heartbeats; at shutdown the instance is marked draining first and removed once drained;
- what it built to start kept out of the garbage collector's full passes, and every pass
  timed while it serves (`ordermesh.garbage`);
- one log line per call it answered ("rpc handled": method, status code, milliseconds; about
  20 us each, measured), health checks and reflection aside;
- its metrics (`ordermesh.metrics`: the RPCs by method and status code, and what the runtime
  counts) at `/metrics` over HTTP, on METRICS_PORT (default: a free port), which the
  registration publishes for Prometheus; on the same port, the HTTP applications it is given
  (`apps`, each at its prefix: the operator console's pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from aiohttp import web
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ordermesh import bounds, telemetry
from ordermesh.config import ServiceSettings
from ordermesh.correlation import adopt_header, correlation_id
from ordermesh.failures import code_of, failure
from ordermesh.garbage import keep_startup_objects
from ordermesh.health import Readiness
from ordermesh.identity import AccessPolicy, Authenticator, caller
from ordermesh.logging import get_logger
from ordermesh.metrics import Metrics, MetricsServer, RpcMetrics
from ordermesh.registration import registration_of
from ordermesh.registry import Registration
from ordermesh.switches import RPC_ERRORS, RpcFault, Switches
from ordermesh.tls import MutualTls
from ordermesh.watch import follow

if TYPE_CHECKING:  # its type only: strawberry costs a service without a subgraph 0.18 s at start
    from ordermesh.graphql import Subgraph

__all__ = ["LIVENESS", "GrpcServer", "Service", "serve"]

log = get_logger(__name__)

# The health name that says the process serves, not whether its dependencies answer.
LIVENESS = "liveness"


@dataclass(frozen=True)
class Service:
    """A servicer and what serving it takes: its descriptor and the generated `add_*` function."""

    descriptor: ServiceDescriptor
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    # Whether its RPCs declare `(common.v1.access)`: a service of another contract (Envoy's
    # Authorization) is open like health and reflection, and is never routed by the gateway.
    governed: bool = True


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, Any]:
    """The call's metadata by key; a key sent more than once has its values joined by a comma,
    as HTTP joins a repeated header (so that two `authorization` values are seen as two)."""
    metadata: dict[str, Any] = {}
    for key, value in context.invocation_metadata() or ():
        metadata[key] = f"{metadata[key]},{value}" if key in metadata else value
    return metadata


async def _fail(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    """Answers a failed call (see ordermesh.failures)."""
    await context.abort(*failure(exc, what=method))


# Status codes that mean the server failed the call, not the caller (OpenTelemetry's gRPC
# conventions mark the server span an error for these).
SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


# Health checks (every second, from Envoy and the registry's probes) and reflection: no spans.
UNTRACED = ("/grpc.health.", "/grpc.reflection.")
# Never slowed or failed by a switch: health checks, reflection, and the operator APIs, through
# which an operator turns a fault off again and looks at what it did.
UNSWITCHED = (*UNTRACED, "/ops.")


def _server_span(
    method: str, metadata: Mapping[str, Any], *, traced: bool
) -> contextlib.AbstractContextManager[telemetry.Span]:
    """The call's SERVER span, a child of the caller's trace context (Envoy's, or another
    service's); none for health checks and reflection."""
    if not traced:
        return contextlib.nullcontext(telemetry.INVALID_SPAN)
    service, _, name = method.lstrip("/").partition("/")
    return telemetry.tracer.start_as_current_span(
        method.lstrip("/"),
        context=telemetry.extract(metadata),
        kind=telemetry.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    )


@contextlib.contextmanager
def _call_scope(metadata: Mapping[str, Any]) -> Iterator[None]:
    """The call's correlation id (adopted from its metadata) and no caller yet (`admit` sets
    it), for the handler's duration, then what was there before."""
    token = correlation_id.set(adopt_header(metadata, edge="grpc"))
    identity = caller.set(None)
    try:
        yield
    finally:
        caller.reset(identity)
        correlation_id.reset(token)


def _record_failure(span: telemetry.Span, exc: Exception, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_FAILURES:
        span.record_exception(exc)
        span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, f"{code.name}: {exc}"))


async def _inject(
    fault: RpcFault, context: grpc.aio.ServicerContext, service: str, method: str
) -> None:
    """Answers the call late, and with the fault's status if it has one (AbortError)."""
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.status is not None:
        await context.abort(
            fault.status, f"fault switch {RPC_ERRORS} is on (service={service}, method={method})"
        )


class _EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sets the correlation id and the caller around each call; maps failures to status codes.

    Each method's handler is wrapped once, at its first call, and reused: the wrapper reads what
    differs between calls (the metadata) from the call's context."""

    def __init__(
        self,
        policy: AccessPolicy,
        rpc_metrics: RpcMetrics,
        switches: Switches | None = None,
        service: str = "",
    ):
        """`switches`: the process's fault switches, `service` its name (what their
        targeting sees)."""
        self._policy = policy
        self._rpc_metrics = rpc_metrics
        self._switches = switches
        self._service = service
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:  # no such method: not remembered, as its name is the caller's
                return None
            wrapped = self._wrapped[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        policy = self._policy if self._policy.governs(method) else None
        traced = not method.startswith(UNTRACED)
        record = self._rpc_metrics.recorder(method) if traced else None
        switches = self._switches if not method.startswith(UNSWITCHED) else None
        service, name = self._service, method.rpartition("/")[2]
        # A streamed request is an iterator, not a message: there is none in our contracts.
        checked = not handler.request_streaming
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        inner = (
            handler.unary_unary
            or handler.stream_unary
            or handler.unary_stream
            or handler.stream_stream
        )

        async def admit(request: Any, metadata: dict[str, Any]) -> None:
            """The one check of every kind of method: the caller's access, the request's bounds."""
            if policy is not None:
                caller.set(await policy.admit(method, metadata))
                if checked:
                    bounds.check(request)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = _metadata(context)
            with _call_scope(metadata):
                started = time.perf_counter()
                code = grpc.StatusCode.OK
                with _server_span(method, metadata, traced=traced) as span:
                    try:
                        await admit(request, metadata)
                        fault = switches.rpc_fault(service, name) if switches is not None else None
                        if fault is not None:
                            await _inject(fault, context, service, name)
                        response = await inner(request, context)
                        span.set_attribute("rpc.grpc.status_code", code.value[0])
                        return response
                    except grpc.aio.AbortError:  # the handler answered with a status of its own
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    except asyncio.CancelledError:
                        code = grpc.StatusCode.CANCELLED
                        raise
                    except Exception as exc:  # noqa: BLE001 - the edge answers every failure
                        code = code_of(exc)
                        _record_failure(span, exc, code)
                        await _fail(context, method, exc)
                    finally:
                        if record is not None:
                            elapsed_s = time.perf_counter() - started
                            record(code, elapsed_s)
                            log.info(
                                "rpc handled",
                                method=method,
                                code=code.name,
                                ms=round(elapsed_s * 1e3, 2),
                            )

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(call, **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(call, **codec)

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            metadata = _metadata(context)
            with _call_scope(metadata):
                try:
                    await admit(request, metadata)
                    async for response in inner(request, context):
                        yield response
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the edge answers every failure
                    await _fail(context, method, exc)

        # A streaming handler either yields its responses or awaits context.write() for each
        # (as the health service's Watch does); the wrapper must be of the same kind.
        wrapper = stream if inspect.isasyncgenfunction(inner) else call
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrapper, **codec)
        return grpc.stream_stream_rpc_method_handler(wrapper, **codec)


class GrpcServer:
    """A grpc.aio server with health, reflection and the edge interceptor; see the module doc."""

    def __init__(
        self,
        services: Sequence[Service],
        *,
        readiness: Readiness | None = None,
        authenticator: Authenticator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        health_interval_s: float = 2.0,
        shutdown_grace_s: float = 10.0,
        metrics: Metrics | None = None,
        credentials: grpc.ServerCredentials | None = None,
        switches: Switches | None = None,
        service: str = "",
    ):
        """`credentials`: TLS (ordermesh.tls); None serves plaintext. `switches`: the fault
        switches its RPCs obey (none if None), `service` the name their targeting sees."""
        self._services = list(services)
        self._credentials = credentials
        self.metrics = metrics or Metrics()
        self._readiness = readiness or Readiness()
        self._address = f"{host}:{port}"
        self._health_interval_s = health_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        # SO_REUSEPORT off: a second process on a taken port must fail, not share it silently.
        policy = AccessPolicy((s.descriptor for s in self._services if s.governed), authenticator)
        self._server = grpc.aio.server(
            interceptors=[_EdgeInterceptor(policy, self.metrics.rpc, switches, service)],
            options=[("grpc.so_reuseport", 0)],
        )
        self._health = health.aio.HealthServicer()
        self._serving = False
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def serving(self) -> bool:
        """What its health says of the whole server: SERVING (ready, not shutting down)."""
        return self._serving

    @property
    def health_names(self) -> list[str]:
        """The names health reports on: "" (the whole server) and each service's full name."""
        return ["", *(s.descriptor.full_name for s in self._services)]

    async def start(self) -> int:
        """Binds, starts serving and returns the port; health is SERVING once probes pass."""
        for service in self._services:
            service.add_to_server(service.servicer, self._server)
            for method in service.descriptor.methods:
                self.metrics.rpc.declare(f"/{service.descriptor.full_name}/{method.name}")
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [
                *(s.descriptor.full_name for s in self._services),
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self._server,
        )
        self.port = (
            self._server.add_secure_port(self._address, self._credentials)
            if self._credentials is not None
            else self._server.add_insecure_port(self._address)
        )
        await self._set_health(False)
        await self._server.start()
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self._refresh_health()
        readiness = follow(
            self._refresh_health,
            refresh_s=self._health_interval_s,
            wait_first=True,
            name="readiness",
            failed="readiness not checked; checking again",
        )
        self._watcher = asyncio.create_task(readiness, name="readiness")
        log.info("grpc server started", port=self.port, ready=self._readiness.ready)
        return self.port

    async def stop(self) -> None:
        """NOT_SERVING at once, then refuses new calls and lets in-flight ones finish."""
        self._serving = False
        await self._health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._server.stop(self._shutdown_grace_s)
        log.info("grpc server stopped", port=self.port)

    async def _set_health(self, ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.health_names:
            await self._health.set(name, status)
        self._serving = ready

    async def _refresh_health(self) -> None:
        was_ready = self._readiness.ready
        ready = await self._readiness.check()
        await self._set_health(ready)
        if ready and not was_ready:
            log.info("ready")
        elif was_ready and not ready:
            log.warning("not ready", failures=self._readiness.failures)


async def serve(
    settings: ServiceSettings,
    services: Sequence[Service],
    *,
    readiness: Readiness | None = None,
    authenticator: Authenticator | None = None,
    notes: Callable[[], Mapping[str, str]] | None = None,
    metrics: Metrics | None = None,
    subgraph: Subgraph | None = None,
    apps: Mapping[str, web.Application] | None = None,
    switches: Switches | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully: every service's entry.
    `subgraph`: its GraphQL subgraph, at `/graphql` beside `/metrics` (ordermesh.graphql).
    `apps`: HTTP applications beside `/metrics`, each mounted at its prefix (e.g. `/console`),
    answering only calls that carry INTERNAL_TOKEN, when it is set (ordermesh.metrics).

    `notes()`, read at each heartbeat, is published with the instance's registration: what an
    operator should know of it, e.g. `Runtime.notes` (its breakers' states, and what the
    service noted), which `make status` shows. `metrics` (`Runtime.metrics`, or the RPCs' and
    heartbeats' alone if none) are served at `/metrics` on METRICS_PORT, published with the
    registration. `switches` (`Runtime.switches`): the fault switches its RPCs obey."""
    metrics = metrics or Metrics()
    tls = MutualTls.of(settings)
    server = GrpcServer(
        services,
        readiness=readiness,
        authenticator=authenticator,
        host=settings.grpc_host,
        port=settings.grpc_port,
        health_interval_s=settings.health_interval_s,
        shutdown_grace_s=settings.shutdown_grace_s,
        metrics=metrics,
        credentials=tls.server_credentials() if tls is not None else None,
        switches=switches,
        service=settings.service_name,
    )
    routes = {}
    if subgraph is not None:
        routes["/graphql"] = subgraph.view(
            authenticator, metrics.registry, internal_token=settings.internal_token
        )
    exporter = MetricsServer(
        metrics,
        host=settings.grpc_host,
        port=settings.metrics_port,
        routes=routes,
        serving=lambda: server.serving,
        apps=apps,
        internal_token=settings.internal_token,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    registration: Registration | None = None
    keep_startup_objects()
    metrics.collections.watch()
    try:
        metrics_port = await exporter.start()
        port = await server.start()
        if settings.port_file:
            await asyncio.to_thread(Path(settings.port_file).write_text, f"{port}\n")
        if settings.redis_url:
            registration = registration_of(settings, port, metrics_port, notes, metrics.heartbeats)
            await registration.start()
        await stopping.wait()
        log.info("shutdown requested")
    finally:
        if registration is not None:
            await registration.drain()
            # Still answering while the news spreads (registry -> discovery -> Envoy): a call
            # sent before it arrives is served, not refused.
            await asyncio.sleep(settings.drain_delay_s)
        await server.stop()
        if registration is not None:
            await registration.stop()
            await registration.registry.close()
        await exporter.stop()
        metrics.collections.unwatch()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
