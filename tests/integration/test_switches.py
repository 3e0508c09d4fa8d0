"""The handler-fails fault switch on a real consumer, broker and store: turned on from the
command line while the consumer runs, it makes that queue's messages of that type fail, be
retried and be dead-lettered as InjectedFault; turned off, the next ones pass, and the dead
letter, replayed, is applied exactly once. The RPC switches on a real gRPC server: its calls
answered late, then failed with the status chosen, its health checks never. Also: the flag
file followed on disk (a malformed version ignored, a removed file turning every switch off)
and the command line's answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from inventory.v1 import events_pb2
from inventory.v1 import inventory_service_pb2 as inventory_pb
from inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from ordermesh.broker import Broker
from ordermesh.consumer import Consumer
from ordermesh.events import outgoing
from ordermesh.grpc import GrpcServer
from ordermesh.ledger import Ledger
from ordermesh.metrics import Metrics
from ordermesh.operations import OPERATOR_ACTIONS, Operations, Operator
from ordermesh.store import Collection
from ordermesh.store.sqlite import SqliteStore
from ordermesh.switches import HANDLER_FAILS, RPC_ERRORS, RPC_LATENCY, SWITCHES, Switches
from ordermesh.topology import Subscription

from tests.integration import grpc_app
from tests.integration.test_event_backbone import (
    FAST_RETRIES,
    StockCounter,
    adjusted,
    eventually,
    totals,
)

ADJUSTED = "inventory.v1.StockAdjusted"
# Far below the default (2 s, where a change is not heard at once): the tests wait for what they
# assert.
REFRESH_S = 0.02


@pytest.fixture
async def broker(amqp_url):
    broker = Broker(amqp_url, name="test")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "service.db")
    await store.open([Collection("stock"), OPERATOR_ACTIONS])
    yield store
    await store.close()


@pytest.fixture
def flags(tmp_path):
    return tmp_path / "flags.json"


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
async def switches(flags, metrics):
    """The test process's switches, following the flag file (absent at first)."""
    switches = Switches(str(flags), metrics=metrics.switches, refresh_s=REFRESH_S)
    following = asyncio.create_task(switches.follow())
    yield switches
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)


class Reservations:
    """The handler of the subscription's other type, which the switch does not name."""

    def __init__(self) -> None:
        self.orders: list[str] = []

    async def __call__(self, message, envelope, tx):
        self.orders.append(message.order_id)


async def switches_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FAULT_FLAGS_FILE"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ordermesh.switches", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def flip(*args: str) -> str:
    code, out, err = await switches_cli(*args)
    assert code == 0, err
    return out


def sample(metrics: Metrics, name: str, switch: str = HANDLER_FAILS) -> float | None:
    return metrics.registry.get_sample_value(name, {"switch": switch})


def active(metrics: Metrics, switch: str = HANDLER_FAILS) -> float | None:
    return sample(metrics, "ordermesh_fault_switch_active", switch)


async def until(condition, timeout_s: float = 5.0):
    await eventually(lambda: asyncio.sleep(0, condition()), timeout_s)


async def test_a_switched_on_handler_fails_until_switched_off_and_its_dead_letter_replays_once(
    broker, store, switches, metrics, flags
):
    ledger = Ledger()
    subscription = Subscription(
        service="test", purpose=f"switched-{uuid.uuid4().hex[:6]}",
        types=[events_pb2.StockAdjusted, events_pb2.StockReserved], retry_delays_s=FAST_RETRIES,
    )  # fmt: skip
    queue = subscription.queue()
    reservations = Reservations()
    consumer = Consumer(
        subscription,
        {events_pb2.StockAdjusted: StockCounter(), events_pb2.StockReserved: reservations},
        store=store, broker=broker, ledger=ledger, switches=switches,
    )  # fmt: skip
    operations = Operations(
        service="test", store=store, broker=broker, consumers=lambda: [queue],
        dead_letter_queues=lambda: [subscription.dead_letter_queue],
    )  # fmt: skip
    await consumer.start()
    try:
        said = await flip("on", HANDLER_FAILS, "--queue", queue, "--type", ADJUSTED,
                          "--file", str(flags))  # fmt: skip
        assert said.startswith(f"handler-fails on for queue={queue}, type={ADJUSTED} in ")
        # The running consumer's process sees it, without a restart.
        await until(lambda: active(metrics) == 1)

        failed = outgoing(adjusted("p-1", delta=7), producer="test")
        await broker.publish(failed)
        await broker.publish(outgoing(events_pb2.StockReserved(order_id="o-1"), producer="test"))

        await until(lambda: ledger.count("dead_lettered") == 1)
        # Where the console finds it: the service's dead letters.
        [dead] = await operations.dead_letters()
        assert dead.event_id == failed.envelope.event_id
        assert dead.failure["error-class"] == "InjectedFault"
        assert dead.failure["error-message"] == (
            f"fault switch handler-fails is on (service=test, queue={queue}, type={ADJUSTED})"
        )
        assert dead.failure["attempts"] == str(len(FAST_RETRIES) + 1)
        assert ledger.count("retried") == len(FAST_RETRIES)
        assert await totals(store) == {}
        # The subscription's other type is not named: it passes.
        assert reservations.orders == ["o-1"]
        assert sample(metrics, "ordermesh_fault_injections_total") == len(FAST_RETRIES) + 1

        await flip("off", HANDLER_FAILS, "--file", str(flags))
        await until(lambda: active(metrics) == 0)
        await broker.publish(outgoing(adjusted("p-2", delta=5), producer="test"))
        await until(lambda: ledger.count("processed", ADJUSTED) == 1)
        assert await totals(store) == {"p-2": 5}

        cleared = Operator(actor="test", reason="the fault is cleared")
        replayed = await operations.replay(
            subscription.dead_letter_queue, {failed.envelope.event_id}, cleared
        )

        assert replayed == 1
        await until(lambda: ledger.count("processed", ADJUSTED) == 2)
        assert await totals(store) == {"p-1": 7, "p-2": 5}
        # Once: replaying again finds nothing, and the message coming again is absorbed.
        assert await operations.replay(subscription.dead_letter_queue, None, cleared) == 0
        await broker.publish(failed)
        await until(lambda: ledger.count("duplicate") == 1)
        assert await totals(store) == {"p-1": 7, "p-2": 5}
    finally:
        await consumer.stop()


async def test_every_process_following_the_file_hears_a_change_at_once(flags):
    # No look at the file for a minute: what they see, they heard (inotify on the folder).
    followers = [Switches(str(flags), refresh_s=60) for _ in range(2)]
    following = [asyncio.create_task(s.follow()) for s in followers]
    try:
        await asyncio.sleep(0.05)
        await flip("on", HANDLER_FAILS, "--type", ADJUSTED, "--file", str(flags))
        written = time.monotonic()

        def seen() -> bool:
            return all(
                s.is_on(HANDLER_FAILS, service="test", queue="any", type=ADJUSTED)
                for s in followers
            )

        await until(seen)
        # The command's own exit is in there too: a generous bound, not a measure.
        assert time.monotonic() - written < 1.0
    finally:
        for task in following:
            task.cancel()
        await asyncio.gather(*following, return_exceptions=True)


async def test_a_malformed_file_on_disk_keeps_the_last_state_and_a_removed_one_turns_all_off(
    switches, metrics, flags
):
    await flip("on", HANDLER_FAILS, "--file", str(flags))
    await until(lambda: active(metrics) == 1)

    for malformed in (b"{half a file", b"\xff\xfe not text"):
        flags.write_bytes(malformed)
        await asyncio.sleep(REFRESH_S * 5)
        assert switches.is_on(HANDLER_FAILS, service="test", queue="q", type=ADJUSTED)

    flags.unlink()
    await until(lambda: active(metrics) == 0)
    assert not switches.is_on(HANDLER_FAILS, service="test", queue="q", type=ADJUSTED)


async def listing(flags, switch: str = HANDLER_FAILS) -> dict:
    """What `list` says of `switch`."""
    listed = [json.loads(line) for line in (await flip("list", "--file", str(flags))).splitlines()]
    assert [entry["switch"] for entry in listed] == list(SWITCHES)
    return next(entry for entry in listed if entry["switch"] == switch)


async def test_the_command_line_lists_the_switches_and_refuses_what_it_cannot_do(flags):
    await flip("on", HANDLER_FAILS, "--queue", "notification.events", "--file", str(flags))
    listed = await listing(flags)
    assert (listed["switch"], listed["on"]) == (HANDLER_FAILS, True)
    assert listed["where"] == {"queue": "notification.events"}
    # The file is flagd's format, as written.
    flag = json.loads(flags.read_text())["flags"][HANDLER_FAILS]
    assert flag["state"] == "ENABLED"
    assert flag["variants"] == {"on": True, "off": False}

    await flip("off", HANDLER_FAILS, "--file", str(flags))
    assert (await listing(flags))["on"] is False

    code, _, err = await switches_cli("list")
    assert code == 2
    assert "FAULT_FLAGS_FILE" in err
    flags.write_text("{half a file")
    code, _, err = await switches_cli("on", HANDLER_FAILS, "--file", str(flags))
    assert code == 1
    assert "malformed" in err
    assert flags.read_text() == "{half a file"


async def test_rpc_switches_flipped_from_the_command_line_slow_then_fail_a_servers_calls(
    switches, metrics, flags
):
    server = GrpcServer(
        [grpc_app.service()], metrics=metrics, switches=switches, service="inventory"
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)
            slow = ("--service", "inventory", "--method", "ListProducts", "--latency-ms", "300")
            said = await flip("on", RPC_LATENCY, *slow, "--file", str(flags))
            assert said.startswith(
                "rpc-latency on for service=inventory, method=ListProducts, latency_ms 300 in "
            )
            await until(lambda: active(metrics, RPC_LATENCY) == 1)
            started = time.perf_counter()
            await stub.ListProducts(inventory_pb.ListProductsRequest(), timeout=5)
            assert time.perf_counter() - started >= 0.3  # the latency it was told to add

            # Every RPC of the service, all of them failed (the defaults: 100 %, UNAVAILABLE).
            await flip("on", RPC_ERRORS, "--service", "inventory", "--file", str(flags))
            await until(lambda: active(metrics, RPC_ERRORS) == 1)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.ListProducts(inventory_pb.ListProductsRequest(), timeout=5)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            assert failed.value.details() == (
                "fault switch rpc-errors is on (service=inventory, method=ListProducts)"
            )
            # Its health is not the switch's to fail: a probe still sees it serving.
            health = health_pb2_grpc.HealthStub(channel)
            checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            # What the clients saw is in the server's metrics, and each fault counted.
            answered = {"grpc_service": "inventory.v1.InventoryService",
                        "grpc_method": "ListProducts", "grpc_code": "UNAVAILABLE"}  # fmt: skip
            handled = metrics.registry.get_sample_value("grpc_server_handled_total", answered)
            assert handled == 1
            injected = "ordermesh_fault_injections_total"
            assert sample(metrics, injected, RPC_ERRORS) == 1
            assert sample(metrics, injected, RPC_LATENCY) == 2

            for switch in (RPC_ERRORS, RPC_LATENCY):
                await flip("off", switch, "--file", str(flags))
                await until(lambda switch=switch: active(metrics, switch) == 0)
            await stub.ListProducts(inventory_pb.ListProductsRequest(), timeout=5)
            assert sample(metrics, injected, RPC_LATENCY) == 2  # nothing more injected
    finally:
        await server.stop()


async def test_the_command_line_refuses_an_rpc_switch_it_cannot_write(flags):
    for args, why in (
        ((RPC_LATENCY,), "rpc-latency needs latency_ms"),
        ((RPC_LATENCY, "--latency-ms", "0"), "from 1 to 60000"),
        ((RPC_ERRORS, "--percent", "0"), "above 0"),
        ((RPC_LATENCY, "--latency-ms", "50", "--queue", "q"), "does not look at queue"),
        ((HANDLER_FAILS, "--method", "PlaceOrder"), "does not look at method"),
    ):
        code, _, err = await switches_cli("on", *args, "--file", str(flags))
        assert (code, why in err) == (2, True), err
    assert not flags.exists()  # nothing written
