"""Service-to-service calls (ordermesh.upstream) against real gRPC servers and a real Redis:
instances from the registry in turn, retries of idempotent calls only, a circuit breaker."""

import asyncio
import time

import grpc
import pybreaker
import pytest
from inventory.v1 import inventory_service_pb2 as pb
from inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext
from ordermesh import errors
from ordermesh.correlation import correlation_id
from ordermesh.errors import Unavailable
from ordermesh.grpc import GrpcServer, Service
from ordermesh.registry import Instance, Registration, Registry
from ordermesh.upstream import Upstream

from harness.process import free_port


class Named(pb_grpc.InventoryServiceServicer):
    """Answers ListProducts with its name (or hangs, when told to); GetProduct: NOT_FOUND."""

    def __init__(self, name: str):
        self.name = name
        self.hanging = False
        self.calls = 0

    async def ListProducts(self, request, context):
        self.calls += 1
        self.seen = (correlation_id.get(), dict(context.invocation_metadata()).get("traceparent"))
        if self.hanging:
            await asyncio.sleep(30)
        return pb.ListProductsResponse(next_page_token=self.name)

    async def GetProduct(self, request, context):
        raise errors.NotFound(f"product {request.product_id!r} does not exist")


async def serving(name: str) -> tuple[GrpcServer, Named]:
    servicer = Named(name)
    descriptor = pb.DESCRIPTOR.services_by_name["InventoryService"]
    add = pb_grpc.add_InventoryServiceServicer_to_server
    server = GrpcServer([Service(descriptor, servicer, add)], shutdown_grace_s=0)
    await server.start()
    return server, servicer


def list_products(channel, timeout_s):
    return pb_grpc.InventoryServiceStub(channel).ListProducts(
        pb.ListProductsRequest(), timeout=timeout_s
    )


def get_product(channel, timeout_s):
    return pb_grpc.InventoryServiceStub(channel).GetProduct(
        pb.GetProductRequest(product_id="p-1"), timeout=timeout_s
    )


async def answer(upstream: Upstream) -> str:
    """The name of the instance that answered an idempotent call."""
    return (await upstream.call(list_products, idempotent=True)).next_page_token


@pytest.fixture
async def registry(redis_server, request):
    registry = Registry(redis_server.url, namespace=f"upstream-{request.node.name}")
    yield registry
    await registry.close()


async def test_calls_take_the_registered_instances_in_turn_and_skip_draining_ones(registry):
    (one, _), (two, _) = await serving("one"), await serving("two")
    registrations = [
        Registration(registry, Instance("inventory", name, f"127.0.0.1:{server.port}"))
        for name, server in (("one", one), ("two", two))
    ]
    for registration in registrations:
        await registration.start()
    upstream = Upstream("inventory", fallback="127.0.0.1:1", registry=registry)
    await upstream.start()
    try:
        answers = [await answer(upstream) for _ in range(6)]
        assert sorted(answers) == ["one"] * 3 + ["two"] * 3

        await registrations[0].drain()
        drained = f"127.0.0.1:{one.port}"
        deadline = time.monotonic() + 10
        while drained in upstream.addresses():  # the watcher hears of the drain
            assert time.monotonic() < deadline, "the drain never reached the upstream's watcher"
            await asyncio.sleep(0.05)
        answers = [await answer(upstream) for _ in range(4)]
        assert answers == ["two"] * 4
    finally:
        await upstream.stop()
        for registration in registrations:
            await registration.stop()
        await one.stop()
        await two.stop()


async def test_only_idempotent_calls_are_tried_again_on_another_instance(registry):
    live, _ = await serving("live")
    dead_port = free_port()  # registered, but nothing listens there
    registrations = [
        Registration(registry, Instance("inventory", "a-dead", f"127.0.0.1:{dead_port}")),
        Registration(registry, Instance("inventory", "b-live", f"127.0.0.1:{live.port}")),
    ]
    for registration in registrations:
        await registration.start()
    upstream = Upstream("inventory", fallback="127.0.0.1:1", registry=registry, fail_max=100)
    await upstream.start()
    try:
        # Turns alternate, the dead instance first: an idempotent call fails there and is
        # tried again on the live one (two turns); a non-idempotent one gets its turn only.
        answer = await upstream.call(list_products, idempotent=True)
        assert answer.next_page_token == "live"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await upstream.call(list_products, idempotent=False)  # the dead one's turn
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        answer = await upstream.call(list_products, idempotent=False)  # the live one's turn
        assert answer.next_page_token == "live"
    finally:
        await upstream.stop()
        for registration in registrations:
            await registration.stop()
        await live.stop()


async def test_the_breaker_opens_on_a_hanging_service_fails_fast_and_recovers():
    server, servicer = await serving("slow")
    upstream = Upstream(
        "inventory", fallback=f"127.0.0.1:{server.port}", timeout_s=0.2, fail_max=3, reset_s=1.0
    )
    await upstream.start()
    try:
        servicer.hanging = True
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await upstream.call(list_products, idempotent=False)
        with pytest.raises(Unavailable):  # the third failure opens it
            await upstream.call(list_products, idempotent=False)
        assert upstream.breaker.current_state == pybreaker.STATE_OPEN

        reached = servicer.calls
        for _ in range(100):
            with pytest.raises(Unavailable, match="circuit breaker open"):
                await upstream.call(list_products, idempotent=True)
        # Failing fast: no call while open went to the hanging service to wait for its deadline
        # (how fast, in figures, is bench material).
        assert servicer.calls == reached

        servicer.hanging = False
        await asyncio.sleep(1.1)  # the breaker's reset_s must pass (a duration it defines)
        answer = await upstream.call(list_products, idempotent=False)
        assert answer.next_page_token == "slow"
        assert upstream.breaker.current_state == pybreaker.STATE_CLOSED
    finally:
        await upstream.stop()
        await server.stop()


async def test_business_answers_do_not_open_the_breaker():
    server, _ = await serving("answers")
    upstream = Upstream("inventory", fallback=f"127.0.0.1:{server.port}", fail_max=2)
    await upstream.start()
    try:
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as answered:
                await upstream.call(get_product, idempotent=True)
            assert answered.value.code() == grpc.StatusCode.NOT_FOUND
        assert upstream.breaker.current_state == pybreaker.STATE_CLOSED
    finally:
        await upstream.stop()
        await server.stop()


async def test_a_call_carries_the_correlation_id_and_the_trace_context():
    server, servicer = await serving("a")
    upstream = Upstream("inventory", fallback=f"127.0.0.1:{server.port}")
    await upstream.start()
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    caller = NonRecordingSpan(SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True))
    token = correlation_id.set("flow-42")
    try:
        with trace.use_span(caller):
            await answer(upstream)
    finally:
        correlation_id.reset(token)
        await upstream.stop()
        await server.stop()
    seen_correlation, seen_traceparent = servicer.seen
    assert seen_correlation == "flow-42"
    assert seen_traceparent.startswith(f"00-{trace_id}-")
