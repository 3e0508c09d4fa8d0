"""Service-to-service gRPC over mutual TLS (`ordermesh.tls`), through real processes.

One system (`System(tls=True)`: every service with a certificate of one CA made for it, and a
Redis of its own as registry, so that clients dial the addresses instances registered) serves
the flow and the refusals; the cost is measured on the runtime's test app, with and without TLS.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inventory.v1 import inventory_service_pb2 as inventory_pb
from inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from notification.v1 import notification_service_pb2_grpc as notification_grpc
from order.v1 import order_service_pb2 as order_pb
from order.v1 import order_service_pb2_grpc as order_grpc
from ordermesh.tls import MutualTls, target_name_options, tls_channel
from ordermesh.upstream import Upstream
from user.v1 import user_service_pb2_grpc as user_grpc

from deploy.ca import LocalCA
from harness.gateway import LocalGateway
from harness.process import ManagedProcess, accepts, free_port
from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis
from harness.shop import Shop
from harness.system import System

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def tls_system(
    rabbitmq: PrivateRabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    registry = PrivateRedis(tmp_path_factory.mktemp("tls-registry"))
    registry.start()
    system = System(
        tmp_path_factory.mktemp("tls-system"),
        amqp_url=rabbitmq.add_vhost("mutual-tls"),
        env={"REDIS_URL": registry.url},
        tls=True,
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
        registry.remove()


class TlsShop(Shop):
    """The harness's shop, calling each service over mutual TLS as the client "tests"."""

    def __init__(self, system: System):
        assert system.tls is not None
        self.system = system
        self._channels = {
            s: system.tls.aio_channel(system.address(s), service=s, client="tests")
            for s in system.processes
        }
        self.users = user_grpc.UserServiceStub(self._channels["user"])
        self.inventory = inventory_grpc.InventoryServiceStub(self._channels["inventory"])
        self.orders = order_grpc.OrderServiceStub(self._channels["order"])
        self.notifications = notification_grpc.NotificationServiceStub(
            self._channels["notification"]
        )


async def health(channel: grpc.aio.Channel, name: str = "") -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=name), timeout=5
    )
    return answer.status


async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """The status of a health check that must fail (the handshake refused)."""
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await health(channel)
    return failed.value.code()


async def test_an_order_is_placed_and_approved_with_every_hop_over_mutual_tls(tls_system):
    # The order service prices it through inventory and checks the token with the keys it
    # fetched from the user service: both calls over mutual TLS, to registered addresses.
    shop = TlsShop(tls_system)
    try:
        product = await shop.product(price_minor=1500, stock=5)
        session = await shop.register()

        placed = await shop.place(session, [(product.product_id, 2)])
        settled = await shop.settled(session, placed.order_id)

        assert placed.total.amount_minor == 3000
        assert settled.status == order_pb.ORDER_STATUS_APPROVED
        assert await shop.available(product.product_id) == 3
        assert await shop.credit_available(session) == 100_000 - 3000
    finally:
        await shop.close()


async def test_every_service_answers_a_client_with_a_certificate_of_its_ca(tls_system):
    for service in tls_system.processes:
        async with tls_system.tls.aio_channel(
            tls_system.address(service), service=service
        ) as channel:
            assert await health(channel) == SERVING, service


async def test_a_plaintext_client_is_refused(tls_system):
    for service in tls_system.processes:
        channel = grpc.aio.insecure_channel(tls_system.address(service))
        assert await refused(channel) == grpc.StatusCode.UNAVAILABLE, service


async def test_a_tls_client_without_a_client_certificate_is_refused(tls_system):
    trusting = grpc.ssl_channel_credentials(root_certificates=tls_system.tls.ca_file.read_bytes())
    for service in tls_system.processes:
        channel = grpc.aio.secure_channel(
            tls_system.address(service), trusting, options=target_name_options(service)
        )
        assert await refused(channel) == grpc.StatusCode.UNAVAILABLE, service


async def test_a_client_certificate_from_another_ca_is_refused(tls_system, tmp_path):
    # The client trusts the system's CA (the server passes its check) but is not of it.
    stranger = LocalCA(tmp_path / "another-ca").issue("order")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_system.tls.ca_file.read_bytes(),
        private_key=stranger.key.read_bytes(),
        certificate_chain=stranger.certificate.read_bytes(),
    )
    for service in tls_system.processes:
        channel = grpc.aio.secure_channel(
            tls_system.address(service), credentials, options=target_name_options(service)
        )
        assert await refused(channel) == grpc.StatusCode.UNAVAILABLE, service


async def test_a_client_refuses_a_server_whose_certificate_names_another_service(tls_system):
    # The address says nothing: here the user service answers where inventory was expected.
    as_order = tls_system.tls.mutual_tls("order")
    impostor = Upstream("inventory", fallback=tls_system.address("user"), tls=as_order)
    genuine = Upstream("inventory", fallback=tls_system.address("inventory"), tls=as_order)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await impostor.call(lambda channel, _: health(channel), idempotent=False)
        answer = await genuine.call(lambda channel, _: health(channel), idempotent=False)
    finally:
        await impostor.stop()
        await genuine.stop()

    # Same CA, same client certificate: only the name in the server's certificate differs.
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert answer == SERVING


@pytest.mark.parametrize("name", ["", "liveness"])
def test_the_container_health_probe_speaks_mutual_tls(tls_system, name):
    """`python -m ordermesh.probe`, as compose's health check runs it beside the service."""
    env = {
        **os.environ,
        "GRPC_PORT": str(tls_system.processes["order"].port),
        **tls_system.tls.settings("order"),
    }
    probe = [sys.executable, "-m", "ordermesh.probe", *(["--service", name] if name else [])]

    answered = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    without_tls = subprocess.run(
        probe,
        env={k: v for k, v in env.items() if not k.startswith("GRPC_TLS_")},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert answered.returncode == 0, answered.stderr
    assert without_tls.returncode == 1
    assert "does not answer: UNAVAILABLE" in without_tls.stderr


# The cost: the runtime's test app (`serve()` as every service), its public ListProducts.
CALLS = 1000
HANDSHAKES = 50


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _unary_latencies(channel: grpc.aio.Channel) -> list[float]:
    stub = inventory_grpc.InventoryServiceStub(channel)
    request = inventory_pb.ListProductsRequest()
    for _ in range(50):  # warm: connection, handshake, the server's per-method wrappers
        await stub.ListProducts(request, timeout=5)
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        await stub.ListProducts(request, timeout=5)
        samples.append(time.perf_counter() - started)
    return samples


async def _first_call_latencies(address: str, tls: MutualTls | None) -> list[float]:
    """A new connection each time: the handshake's share."""
    request = inventory_pb.ListProductsRequest()
    samples = []
    for _ in range(HANDSHAKES):
        async with tls_channel(address, service="probe", tls=tls) as channel:
            started = time.perf_counter()
            await inventory_grpc.InventoryServiceStub(channel).ListProducts(request, timeout=5)
            samples.append(time.perf_counter() - started)
    return samples


@pytest.fixture
def app_processes(redis_server, tmp_path) -> Iterator[dict[str, tuple[str, MutualTls | None]]]:
    """The test app twice, plaintext and mutual TLS: {label: (address, client's TLS)}."""
    ca = LocalCA(tmp_path / "ca")
    started: dict[str, tuple[str, MutualTls | None]] = {}
    processes = []
    for label, tls_env in (("plaintext", {}), ("mutual TLS", ca.settings("probe"))):
        port = free_port()
        process = ManagedProcess(
            f"app-{len(processes)}",
            [sys.executable, "-m", "tests.integration.grpc_app"],
            directory=tmp_path / f"app-{len(processes)}",
            env={
                "PYTHONPATH": str(ROOT),
                "SERVICE_NAME": "probe",
                "REDIS_URL": redis_server.url,
                "GRPC_PORT": str(port),
                "LOG_LEVEL": "WARNING",
                **tls_env,
            },
            ready=lambda port=port: accepts(port),
            ready_timeout_s=30.0,
        )
        processes.append(process)
        process.start()
        started[label] = (f"127.0.0.1:{port}", ca.mutual_tls("tests") if tls_env else None)
    try:
        yield started
    finally:
        for process in processes:
            process.stop()


async def test_the_latency_mutual_tls_adds_to_a_unary_call(app_processes):
    """Measured, printed, not asserted (figures drift with the machine's load)."""
    lines = []
    for label, (address, tls) in app_processes.items():
        async with tls_channel(address, service="probe", tls=tls) as channel:
            warm = await _unary_latencies(channel)
        cold = await _first_call_latencies(address, tls)
        lines.append(
            f"{label:>10}: unary p50 {statistics.median(warm) * 1e3:.3f} ms, "
            f"p99 {_percentile(warm, 0.99) * 1e3:.3f} ms ({CALLS} calls, one connection); "
            f"first call on a new connection p50 {statistics.median(cold) * 1e3:.3f} ms "
            f"({HANDSHAKES} connections)"
        )
    print("\n" + "\n".join(lines))


async def test_the_gateway_calls_the_services_over_mutual_tls(tls_system, tmp_path_factory):
    """Envoy in front of the mutual-TLS system, with a certificate of the same CA: its health
    checks and its calls reach every service over TLS (each service's certificate checked for
    its name), and a REST read is answered."""
    gateway = LocalGateway(
        tmp_path_factory.mktemp("tls-gateway"),
        redis_url=tls_system._env["REDIS_URL"],
        secrets=tls_system.gateway_secrets,
        upstream_tls=tls_system.tls,
    )
    try:
        await asyncio.to_thread(gateway.start)
        await asyncio.to_thread(gateway.wait_for_healthy)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.url}/v1/products?pageSize=1") as response,
        ):
            assert response.status == 200, await response.text()
        for service in ("inventory", "user", "order", "auth", "ratelimit"):
            assert gateway.envoy.counter(f"cluster.{service}.ssl.handshake") > 0, service
    finally:
        await asyncio.to_thread(gateway.stop)
