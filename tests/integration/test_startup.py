"""A service started before its store and broker answer (as compose and Kubernetes start
them, with nothing waiting on health checks) waits for them, then serves."""

from __future__ import annotations

import asyncio
import socket
import time

from harness.postgres import PrivatePostgres
from harness.rabbitmq import PrivateRabbitMQ
from harness.system import ServiceProcess


async def test_a_service_started_before_its_store_and_broker_waits_for_them(tmp_path):
    postgres = PrivatePostgres(tmp_path / "postgres")
    broker = PrivateRabbitMQ(tmp_path / "rabbitmq")
    # The URLs exist before the servers do: the service gets them, and finds nobody there.
    env = {
        "STORE_URL": postgres.url("postgres"),
        "RABBITMQ_URL": broker.url,
        "HEALTH_INTERVAL_S": "0.5",
    }
    service = ServiceProcess("user", tmp_path / "user", env, instance="user-1")
    try:
        starting = asyncio.create_task(asyncio.to_thread(service.start))  # ready: SERVING
        await asyncio.sleep(3)
        assert not starting.done(), "SERVING without a store or a broker"
        assert service.process.running, "it gave up instead of waiting"
        started = time.monotonic()
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(broker.start)
        await starting
        print(f"serving {time.monotonic() - started:.1f} s after its store and broker started")
        log = service.process.log_path.read_text()
        assert '"dependency": "store"' in log
    finally:
        service.stop()
        broker.remove()
        postgres.remove()


async def test_a_service_serves_only_once_it_has_the_keys_that_verify_tokens(
    amqp_url, postgres, tmp_path
):
    """Its first calls must not fail for want of them (a new instance in a rolling restart
    took a check before it had fetched them)."""
    user = ServiceProcess(
        "user",
        tmp_path / "user",
        {"STORE_URL": postgres.database("user_keys"), "RABBITMQ_URL": amqp_url},
        instance="user-1",
    )
    inventory = ServiceProcess(
        "inventory",
        tmp_path / "inventory",
        {
            "STORE_URL": postgres.database("inventory_keys"),
            "RABBITMQ_URL": amqp_url,
            "USER_SERVICE_ADDR": user.address,
            "HEALTH_INTERVAL_S": "0.5",
        },
        instance="inventory-1",
    )
    try:
        starting = asyncio.create_task(asyncio.to_thread(inventory.start))
        await asyncio.sleep(3)
        assert not starting.done(), "SERVING without the keys that verify tokens"
        await asyncio.to_thread(user.start)
        await starting
        assert '"dependency": "the token issuer\'s keys"' in inventory.process.log_path.read_text()
    finally:
        inventory.stop()
        user.stop()


async def test_a_service_whose_port_was_taken_before_it_bound_it_starts_on_another(
    amqp_url, postgres, tmp_path
):
    """The harness chooses a free port, then the service binds it: in between any process's
    outgoing connection may get it (an ephemeral port). Its start then takes a new one."""
    user = ServiceProcess(
        "user",
        tmp_path / "user",
        {"STORE_URL": postgres.database("user_port"), "RABBITMQ_URL": amqp_url},
        instance="user-1",
    )
    chosen = user.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", chosen))
        taken.listen()
        try:
            await asyncio.to_thread(user.start)
            assert user.port != chosen
            assert user.process.running
            assert "Failed to bind" in (tmp_path / "user" / "user-1.log").read_text()
        finally:
            user.stop()
