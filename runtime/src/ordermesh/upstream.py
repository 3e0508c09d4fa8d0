"""Calls to another service: its live instances, a deadline on every call, retries where safe,
and a circuit breaker that fails calls fast while the service keeps failing.

    inventory = Upstream("inventory", fallback="127.0.0.1:50051", registry=registry)
    await inventory.start()
    response = await inventory.call(
        lambda channel, timeout_s: Stub(channel).GetProduct(request, timeout=timeout_s),
        idempotent=True,
    )

Guarantees:
- instances come from the registry (`ordermesh.registry.Watcher`): the live ones, draining ones
  left out, taken in turn (round robin); while Redis is unreachable the last ones seen; with no
  registry, or none registered yet, the `fallback` address;
- with `tls` (ordermesh.tls), mutual TLS to every instance, whose certificate must name `service`;
- every call has a deadline (`timeout_s`), and carries the work's correlation id
  (`x-correlation-id`) and trace context (`traceparent`), in a CLIENT span;
- only an idempotent call is tried again (on the next instance, up to `attempts`, after a short
  backoff), and only when the failure says the call may not have run or may run again safely:
  UNAVAILABLE or DEADLINE_EXCEEDED;
- a circuit breaker per destination service (pybreaker): `fail_max` failures in a row that
  say the service is unwell (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN; a business
  answer such as NOT_FOUND is a success here) open it; while open, calls fail at once with
  `Unavailable` instead of waiting for their deadline; after `reset_s` one call is let
  through, and its outcome closes or opens the breaker again.
pybreaker's own async support needs Tornado; its `calling()` context manager is used instead:
it takes its (threading) lock only to check and record, never across the awaited call.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
import pybreaker

from ordermesh import telemetry
from ordermesh.correlation import correlation_id
from ordermesh.errors import Unavailable
from ordermesh.logging import get_logger
from ordermesh.registry import Registry, Watcher
from ordermesh.tls import MutualTls, tls_channel

__all__ = ["Upstream"]

log = get_logger(__name__)

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
UNWELL = RETRYABLE | {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _is_answer(error: BaseException) -> bool:
    """A failure that is the service's answer (NOT_FOUND, INVALID_ARGUMENT, ...), not its
    being unwell: it does not count against the breaker."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() not in UNWELL


class _Logged(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        breaker: pybreaker.CircuitBreaker,
        old: pybreaker.CircuitBreakerState | None,
        new: pybreaker.CircuitBreakerState,
    ) -> None:
        log.warning("circuit breaker", destination=breaker.name, state=new.name)


class Upstream:
    def __init__(
        self,
        service: str,
        *,
        fallback: str,
        registry: Registry | None = None,
        timeout_s: float = 2.0,
        attempts: int = 3,
        fail_max: int = 5,
        reset_s: float = 10.0,
        tls: MutualTls | None = None,
    ):
        self.service = service
        self._tls = tls
        self.fallback = fallback
        self._watcher = Watcher(registry, [service]) if registry is not None else None
        self.timeout_s = timeout_s
        self._attempts = attempts
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_s,
            exclude=[_is_answer],
            listeners=[_Logged()],
            name=service,
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._turn = itertools.count()

    async def start(self) -> None:
        if self._watcher is not None:
            await self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    def addresses(self) -> list[str]:
        """Where calls go now, in turn."""
        live = [
            i.address
            for i in (self._watcher.instances(self.service) if self._watcher else [])
            if not i.draining
        ]
        return live or [self.fallback]

    def _next_channel(self) -> grpc.aio.Channel:
        addresses = self.addresses()
        address = addresses[next(self._turn) % len(addresses)]
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls_channel(
                address, service=self.service, tls=self._tls, interceptors=[_Propagating()]
            )
        return channel

    async def call(
        self,
        invoke: Callable[[grpc.aio.Channel, float], Awaitable[T]],
        *,
        idempotent: bool,
    ) -> T:
        """`invoke(channel, timeout_s)` on an instance; raises the call's AioRpcError, or
        Unavailable while the breaker is open."""
        attempts = self._attempts if idempotent else 1
        for attempt in range(1, attempts + 1):
            channel = self._next_channel()
            try:
                with self.breaker.calling():
                    return await invoke(channel, self.timeout_s)
            except pybreaker.CircuitBreakerError:
                raise Unavailable(
                    f"{self.service} is failing: calls fail fast for up to "
                    f"{self.breaker.reset_timeout:g} s (circuit breaker open)"
                ) from None
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == attempts:
                    raise
            await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")


class _Propagating(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Each call carries the work's correlation id and trace context, in a CLIENT span."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, _, name = method.lstrip("/").partition("/")
        with telemetry.tracer.start_as_current_span(
            method.lstrip("/"),
            kind=telemetry.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        ) as span:
            carrier: dict[str, str] = {}
            telemetry.inject(carrier)
            current = correlation_id.get()
            if current is not None:
                carrier["x-correlation-id"] = current
            metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
            call = await continuation(details._replace(metadata=metadata), request)
            code = await call.code()
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, code.name))
            return call
