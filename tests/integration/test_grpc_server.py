"""`ordermesh.grpc` serves a real gRPC server with real health, reflection, errors and shutdown."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
import redis.asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inventory.v1 import inventory_service_pb2 as pb
from inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from ordermesh.grpc import LIVENESS, GrpcServer
from ordermesh.health import Readiness, redis_probe

from tests.integration import grpc_app

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = Path(sys.executable).parent / "grpcurl"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_CHECK = "grpc.health.v1.Health/Check"


@pytest.fixture
async def server(redis_server):
    client = redis.asyncio.Redis.from_url(redis_server.url)
    server = GrpcServer([grpc_app.service()], readiness=Readiness({"redis": redis_probe(client)}))
    await server.start()
    yield server
    await server.stop()
    await client.aclose()


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


async def health_of(channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return response.status


async def wait_for_health(channel, expected: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (status := await health_of(channel)) != expected:
        assert time.monotonic() < deadline, f"health stayed {status}, expected {expected}"
        await asyncio.sleep(0.1)


async def test_health_follows_the_dependencies(redis_factory):
    redis_process = redis_factory()
    client = redis.asyncio.Redis.from_url(redis_process.url)
    server = GrpcServer(
        [grpc_app.service()],
        readiness=Readiness({"redis": redis_probe(client)}, timeout_s=0.5),
        health_interval_s=0.2,
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert await health_of(channel) == SERVING
            assert await health_of(channel, "inventory.v1.InventoryService") == SERVING

            redis_process.kill()
            await wait_for_health(channel, NOT_SERVING)
            assert await health_of(channel, LIVENESS) == SERVING  # alive: no restart would help
            checked = await asyncio.to_thread(grpcurl, f"127.0.0.1:{server.port}", HEALTH_CHECK)
            assert json.loads(checked) == {"status": "NOT_SERVING"}

            redis_process.start()
            await wait_for_health(channel, SERVING)
            checked = await asyncio.to_thread(grpcurl, f"127.0.0.1:{server.port}", HEALTH_CHECK)
            assert json.loads(checked) == {"status": "SERVING"}
    finally:
        await server.stop()
        await client.aclose()


async def test_health_watchers_are_told_when_shutdown_begins(server, channel):
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await watch.read()).status == SERVING

    stopping = asyncio.create_task(server.stop())

    assert (await watch.read()).status == NOT_SERVING
    await stopping


async def test_a_domain_error_reaches_the_client_with_its_status_and_message(channel):
    stub = pb_grpc.InventoryServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ListProducts(pb.ListProductsRequest(page_token="missing"))

    assert failure.value.code() is grpc.StatusCode.NOT_FOUND
    assert failure.value.details() == "page token 'missing' matches no page"


async def test_an_unexpected_error_is_internal_and_keeps_its_details_in_the_logs(channel):
    stub = pb_grpc.InventoryServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ListProducts(
            pb.ListProductsRequest(page_token="crash"),
            metadata=[("x-correlation-id", "c-crash")],
        )

    assert failure.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in failure.value.details()
    assert failure.value.details() == "internal error, correlation id c-crash"


@pytest.mark.parametrize(
    ("token", "code"),
    [("store-down", grpc.StatusCode.UNAVAILABLE), ("contended", grpc.StatusCode.ABORTED)],
)
async def test_a_store_that_cannot_do_it_now_is_an_answer_worth_retrying(channel, token, code):
    """Not INTERNAL: the caller (Envoy's retry policy, a client) may try again; the details
    stay in the logs. (PlaceOrder on a saturated PostgreSQL was INTERNAL in bench-scale.)"""
    stub = pb_grpc.InventoryServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ListProducts(
            pb.ListProductsRequest(page_token=token), metadata=[("x-correlation-id", "c-1")]
        )

    assert failure.value.code() is code
    assert "secret" not in failure.value.details()
    assert failure.value.details().endswith("try again (correlation id c-1)")


async def test_the_handler_sees_the_callers_correlation_id(channel):
    stub = pb_grpc.InventoryServiceStub(channel)

    given = await stub.ListProducts(
        pb.ListProductsRequest(), metadata=[("x-correlation-id", "c-123")]
    )
    from_envoy = await stub.ListProducts(
        pb.ListProductsRequest(), metadata=[("x-request-id", "r-456")]
    )
    created = await stub.ListProducts(pb.ListProductsRequest())

    assert given.next_page_token == "c-123"
    assert from_envoy.next_page_token == "r-456"
    assert uuid.UUID(created.next_page_token)


@pytest.mark.parametrize(
    "refused", ["c" * 300, "c" * 129, "has space", "semi;colon", 'quote"', "-leading-dash"]
)
async def test_a_correlation_id_that_is_not_a_safe_bounded_token_is_replaced(channel, refused):
    stub = pb_grpc.InventoryServiceStub(channel)

    answer = await stub.ListProducts(
        pb.ListProductsRequest(), metadata=[("x-correlation-id", refused)]
    )

    assert uuid.UUID(answer.next_page_token)


async def test_a_second_server_cannot_take_a_port_in_use(server):
    second = GrpcServer([grpc_app.service()], port=server.port)

    with pytest.raises(RuntimeError):
        await second.start()


def grpcurl(*args: str) -> str:
    result = subprocess.run([str(GRPCURL), "-plaintext", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_grpcurl_lists_the_services_through_reflection(server):
    listed = await asyncio.to_thread(grpcurl, f"127.0.0.1:{server.port}", "list")

    assert set(listed.split()) == {
        "inventory.v1.InventoryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_grpcurl_calls_a_method_described_through_reflection(server):
    answer = await asyncio.to_thread(
        grpcurl, "-H", "x-correlation-id: c-grpcurl", f"127.0.0.1:{server.port}",
        "inventory.v1.InventoryService/ListProducts",
    )  # fmt: skip

    assert json.loads(answer) == {"next_page_token": "c-grpcurl"}


class ServiceProcess:
    """The test app in a process of its own, as `python -m` starts every service."""

    def __init__(self, redis_url: str):
        env = {**os.environ, "SERVICE_NAME": "probe", "REDIS_URL": redis_url,
               "HEALTH_INTERVAL_S": "0.2", "SHUTDOWN_GRACE_S": "5"}  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.grpc_app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[dict] = []
        self.port = self.wait_for("grpc server started")["port"]

    def wait_for(self, event: str) -> dict:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(json.loads(raw))
            if self.lines[-1]["event"] == event:
                return self.lines[-1]
        raise AssertionError(f"process exited before logging {event!r}: {self.lines}")

    def finish(self) -> int:
        out, _ = self.process.communicate(timeout=20)
        self.lines += [json.loads(line) for line in out.splitlines()]
        return self.process.returncode


async def test_sigterm_drains_in_flight_calls_then_exits(redis_server):
    app = await asyncio.to_thread(ServiceProcess, redis_server.url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            await wait_for_health(channel, SERVING)
            stub = pb_grpc.InventoryServiceStub(channel)
            in_flight = asyncio.ensure_future(
                stub.ListProducts(
                    pb.ListProductsRequest(page_token="sleep:1.5"),
                    metadata=[("x-correlation-id", "c-in-flight")],
                )
            )
            await asyncio.to_thread(app.wait_for, "handling a slow call")

            app.process.send_signal(signal.SIGTERM)

            answered = await asyncio.wait_for(in_flight, 5)
            assert answered.next_page_token == "c-in-flight"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListProducts(pb.ListProductsRequest(), timeout=2)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert await asyncio.to_thread(app.finish) == 0
        events = [line["event"] for line in app.lines if line["event"] != "rpc handled"]
        # Registered (REDIS_URL is set): marked draining before the server stops.
        assert events[-3:] == ["shutdown requested", "draining", "grpc server stopped"]
        # ... and the call in flight was answered in between, after the shutdown began.
        answered_at = next(
            n for n, line in enumerate(app.lines)
            if line["event"] == "rpc handled" and line.get("correlation_id") == "c-in-flight"
        )  # fmt: skip
        shutdown_at = [line["event"] for line in app.lines].index("shutdown requested")
        assert shutdown_at < answered_at
        assert app.lines[answered_at]["code"] == "OK"
        assert all(line["service"] == "probe" for line in app.lines)
    finally:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()
