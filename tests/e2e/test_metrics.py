"""Prometheus scraping the running system: every instance's /metrics found through the registry,
and what an operator must act on answered by the rules after a scenario that causes each of
it: a dead letter, a stalled outbox, an open breaker, failing calls, a missing instance.

The system, Redis, the gateway and Prometheus are this module's own; the broker is the
session's (its publishers are blocked for a few seconds, then released).
"""

import asyncio
import json
import re
from pathlib import Path

import aio_pika
import grpc
import pytest
from order.v1.order_service_pb2 import ORDER_STATUS_APPROVED

from harness.gateway import LocalGateway
from harness.prometheus import PrivatePrometheus
from harness.rabbitmq import PrivateRabbitMQ
from harness.shop import Shop, eventually
from harness.system import UNREACHED_RATE_LIMITS, UNREACHED_READS_PER_CLIENT, System
from tests.e2e.worlds import own_system

pytestmark = pytest.mark.timeout(300)

BREAKER_TO_INVENTORY = (
    'destination:ordermesh_circuit_breaker_open:sum{service="order", destination="inventory"}'
)
DASHBOARD = Path(__file__).parents[2] / "monitoring" / "grafana" / "dashboards" / "ordermesh.json"


@pytest.fixture(scope="module")
def world(rabbitmq: PrivateRabbitMQ, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("metrics")
    with own_system(rabbitmq, directory, **UNREACHED_RATE_LIMITS) as (redis, system):
        gateway = LocalGateway(
            directory / "gateway",
            redis_url=redis.url,
            secrets=system.gateway_secrets,
            reads_per_client_per_s=UNREACHED_READS_PER_CLIENT,
        )
        prometheus = PrivatePrometheus(
            directory / "prometheus",
            redis_url=redis.url,
            gateway_admin=f"127.0.0.1:{gateway.envoy.admin_port}",
            gateway_agent=f"127.0.0.1:{gateway.agent_port}",
        )
        try:
            gateway.start()
            gateway.wait_for_healthy()
            prometheus.start()
            # Every target scraped at least once: what happens next shows as an increase.
            prometheus.wait_for(
                'up{job="ordermesh"} == 1', lambda r: len(r) == len(system.processes) + 2
            )
            yield system, gateway, prometheus
        finally:
            prometheus.stop()
            gateway.stop()


def values(result: list[dict]) -> dict[str, float]:
    """Each series' value by its labels (rendered sorted, for readable failures)."""
    return {
        ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())): r["value"] for r in result
    }


def one(value: float):
    return lambda result: len(result) == 1 and result[0]["value"] == value


def at_least(value: float):
    return lambda result: bool(result) and all(r["value"] >= value for r in result)


def active(alert: str, **labels: str) -> str:
    matchers = "".join(f', {k}="{v}"' for k, v in labels.items())
    return f'ALERTS{{alertname="{alert}"{matchers}}}'


async def test_every_instance_and_the_gateway_are_scraped_and_come_and_go_with_the_registry(world):
    system, _, prometheus = world
    expected = {p.service for p in system.processes.values()} | {"gateway", "gateway-agent"}

    up = prometheus.wait_for(
        'up{job="ordermesh"} == 1', lambda r: {x["labels"]["service"] for x in r} == expected
    )
    assert len(up) == len(system.processes) + 2
    assert prometheus.query('envoy_server_live{service="gateway"}')[0]["value"] == 1
    # Every follower of the edge policy (the agent, each service that verifies tokens) holds a
    # verified one, issued by the auth service moments ago.
    held = prometheus.wait_for("ordermesh_edge_policy_held == 1", lambda r: len(r) == 6)
    assert {x["labels"]["service"] for x in held} == {
        "gateway-agent", "auth", "user", "inventory", "order", "notification"
    }  # fmt: skip
    ages = prometheus.query("ordermesh_edge_policy_age_seconds")
    assert all(0 <= x["value"] < 60 for x in ages), ages
    # Every service keeps what it built to start out of the garbage collector's full passes
    # (tens of thousands of objects; a full pass over them stopped the loop for 74-87 ms).
    services = {p.service for p in system.processes.values()}
    frozen = prometheus.wait_for(
        "ordermesh_gc_frozen_objects > 20000",
        lambda r: {x["labels"]["service"] for x in r} == services,
    )
    assert len(frozen) == len(system.processes), frozen
    # ... and times every pass it makes while serving, which an operator reads as pauses.
    passes = prometheus.wait_for(
        'sum by (service, instance_id) (ordermesh_gc_pause_seconds_count{generation="0"}) > 0',
        lambda r: {x["labels"]["service"] for x in r} == services,
    )
    assert len(passes) == len(system.processes), passes

    extra = system.add_instance("inventory", "inventory-extra")
    try:
        prometheus.wait_for('up{service="inventory"} == 1', lambda r: len(r) == 2)
    finally:
        extra.stop()  # drains and deregisters: it leaves the targets, it is not "missing"
    prometheus.wait_for('up{service="inventory"}', lambda r: len(r) == 1, timeout_s=30)


async def test_after_a_scenario_prometheus_answers_what_an_operator_must_act_on(
    world, rabbitmq: PrivateRabbitMQ
):
    system, gateway, prometheus = world
    shop = Shop(system, via=gateway.address)
    try:
        await placed_orders_are_counted(shop, prometheus)
        await a_dead_letter_is_seen(system, prometheus)
        await a_stalled_outbox_is_seen(shop, rabbitmq, prometheus)
        await an_outage_opens_the_breaker_fails_calls_and_misses_an_instance(
            shop, system, prometheus
        )
    finally:
        await shop.close()
    every_dashboard_query_names_a_series_that_exists(prometheus)


async def placed_orders_are_counted(shop: Shop, prometheus: PrivatePrometheus) -> None:
    session = await shop.register()
    product = await shop.product(price_minor=1, stock=100)
    for _ in range(3):
        order = await shop.place(session, [(product.product_id, 1)])
        assert (
            await shop.settled(session, order.order_id)
        ).status == ORDER_STATUS_APPROVED  # APPROVED

    prometheus.wait_for(
        'sum(grpc_server_handled_total{service="order", grpc_method="PlaceOrder", grpc_code="OK"})',
        one(3),
    )
    prometheus.wait_for('service:grpc_server_handled:rate1m{service="order"} > 0')
    prometheus.wait_for('service:grpc_server_handling_seconds:p99_1m{service="order"} > 0')
    prometheus.wait_for(
        'sum(ordermesh_sagas_ended_total{saga="place_order", outcome="completed"})',
        one(3),
    )
    steps = prometheus.wait_for(
        'sum by (step) (ordermesh_saga_step_duration_seconds_count{service="order"})',
        lambda r: len(r) >= 2,
    )
    assert all(s["value"] >= 3 for s in steps), values(steps)
    # Each reply the saga took was processed once from its queue, none dead-lettered.
    prometheus.wait_for(
        'sum(ordermesh_messages_total{queue="order.saga-replies", stage="processed"})', at_least(6)
    )
    assert prometheus.query('sum(ordermesh_messages_total{stage="dead_lettered"})') == []
    prometheus.wait_for('ordermesh_registry_heartbeats_total{result="renewed"} > 0')
    assert prometheus.query("service:ordermesh_outbox_oldest_age_seconds:max > 5") == []
    assert prometheus.query('ALERTS{alertstate="firing"}') == []


async def a_dead_letter_is_seen(system: System, prometheus: PrivatePrometheus) -> None:
    connection = await aio_pika.connect(system.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"\xff\x00 not an event", message_id="metrics-bad-1"),
            routing_key="notification.events",
        )

    prometheus.wait_for(
        'queue:ordermesh_dead_letter_queue_messages:max{queue="notification.events.dlq"}', one(1)
    )
    prometheus.wait_for(active("OrdermeshDeadLetters", queue="notification.events.dlq"))
    prometheus.wait_for(
        'sum(ordermesh_messages_total{queue="notification.events", stage="dead_lettered"})', one(1)
    )
    # Its work queue: nothing waiting, and the consumer of each instance subscribed.
    prometheus.wait_for('max(ordermesh_queue_messages{queue="notification.events"})', one(0))
    prometheus.wait_for('max(ordermesh_queue_consumers{queue="notification.events"})', at_least(1))


async def a_stalled_outbox_is_seen(
    shop: Shop, rabbitmq: PrivateRabbitMQ, prometheus: PrivatePrometheus
) -> None:
    session = await shop.register()
    product = await shop.product(price_minor=1, stock=10)
    # A memory alarm: the broker takes no message from any publisher until it is lifted.
    rabbitmq.ctl("set_vm_memory_high_watermark", "0")
    try:
        order = await shop.place(session, [(product.product_id, 1)])
        age = prometheus.wait_for(
            'service:ordermesh_outbox_oldest_age_seconds:max{service="order"} > 5', timeout_s=30
        )
        assert age[0]["value"] < 30
        prometheus.wait_for(active("OrdermeshOutboxStalled", service="order"))
    finally:
        rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
    assert (
        await shop.settled(session, order.order_id, timeout_s=30)
    ).status == ORDER_STATUS_APPROVED
    prometheus.wait_for(
        'service:ordermesh_outbox_oldest_age_seconds:max{service="order"}', one(0), timeout_s=30
    )


async def an_outage_opens_the_breaker_fails_calls_and_misses_an_instance(
    shop: Shop, system: System, prometheus: PrivatePrometheus
) -> None:
    session = await shop.register()
    product = await shop.product(price_minor=1, stock=10)  # never asked by the order service
    [inventory] = [i for i in system.instances("inventory") if i.process.running]
    inventory.kill()
    try:
        failures = 0
        for _ in range(12):  # the order service asks inventory for the price of each new item
            try:
                await shop.place(session, [(product.product_id, 1)])
            except grpc.aio.AioRpcError as error:
                failures += error.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(0.2)
        assert failures == 12

        prometheus.wait_for(
            BREAKER_TO_INVENTORY,
            one(1),
        )
        prometheus.wait_for(
            active("OrdermeshBreakerOpen", service="order", destination="inventory")
        )
        prometheus.wait_for('service:grpc_server_errors:ratio_rate1m{service="order"} > 0.01')
        prometheus.wait_for(active("OrdermeshErrorRatioHigh", service="order"))
        prometheus.wait_for(
            'sum(grpc_server_handled_total{grpc_method="PlaceOrder", grpc_code="UNAVAILABLE"})',
            at_least(1),
        )
        # The killed instance left the registry (its lease ran out), not the targets.
        prometheus.wait_for(
            f'up{{service="inventory", instance_id="{inventory.process.name}", lost="true"}} == 0',
            timeout_s=30,
        )
        prometheus.wait_for(
            active("OrdermeshInstanceMissing", service="inventory", alertstate="firing"),
            timeout_s=40,
        )
    finally:
        system.replace(inventory)

    async def approved() -> bool:
        try:
            order = await shop.place(session, [(product.product_id, 1)])
        except grpc.aio.AioRpcError:  # the breaker is still open, or the instance not yet found
            await asyncio.sleep(0.5)
            return False
        return (await shop.settled(session, order.order_id)).status == ORDER_STATUS_APPROVED

    await eventually(approved, timeout_s=60)
    prometheus.wait_for(
        BREAKER_TO_INVENTORY,
        one(0),
        timeout_s=60,
    )


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset"}  # fmt: skip


def series_in(query: str) -> set[str]:
    """The series names a PromQL query mentions: its identifiers that are neither functions,
    keywords, label names (in braces or grouping) nor durations."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without)\s*\([^)]*\)|\"[^\"]*\"", " ", query)
    names = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?!\s*\()\b(?!\s*\()", bare)
    return {n for n in names if n not in PROMQL_WORDS}


def every_dashboard_query_names_a_series_that_exists(prometheus: PrivatePrometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = set(prometheus.api("label/__name__/values"))
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(queries) >= 8
    for query in queries:
        mentioned = series_in(query)
        assert mentioned, f"no series named in {query!r}"
        assert mentioned <= names, f"{query!r} names series that do not exist: {mentioned - names}"
