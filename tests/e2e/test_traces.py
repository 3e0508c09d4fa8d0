"""One request, one trace: a PlaceOrder sent through the gateway is followed by every service
it reaches, across gRPC calls and the broker's hops, into one connected trace that the
services export over OTLP (to a receiver this test runs)."""

from __future__ import annotations

import secrets

import aiohttp
import pytest
from order.v1 import order_service_pb2 as order_pb

from harness.gateway import LocalGateway
from harness.otlp import OtlpReceiver, ReceivedSpan
from harness.shop import Shop, eventually
from harness.system import UNREACHED_RATE_LIMITS
from tests.e2e.worlds import own_system


@pytest.fixture(scope="module")
def world(rabbitmq, tmp_path_factory):
    receiver = OtlpReceiver()
    receiver.start()
    try:
        with own_system(
            rabbitmq,
            tmp_path_factory.mktemp("traces"),
            **UNREACHED_RATE_LIMITS,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_INSECURE="true",
            OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans reach the receiver soon
        ) as (redis, system):
            gateway = LocalGateway(
                system.directory.parent / "gateway",
                redis_url=redis.url,
                secrets=system.gateway_secrets,
                otlp_endpoint=receiver.endpoint.removeprefix("http://"),
            )
            gateway.start()
            try:
                gateway.wait_for_healthy()
                yield system, gateway, receiver
            finally:
                gateway.stop()
    finally:
        receiver.stop()


async def place(
    gateway: LocalGateway, token: str, product_id: str, quantity: int
) -> tuple[str, str, str]:
    """Places an order through REST as a traced client would: the order id, the trace id and
    the span id of the client's own span (the trace's root)."""
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    body = {
        "idempotencyKey": secrets.token_hex(8),
        "items": [{"productId": product_id, "quantity": quantity}],
    }
    headers = {"authorization": f"Bearer {token}", "traceparent": f"00-{trace_id}-{root}-01"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/v1/orders", json=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        order_id = (await response.json())["order"]["orderId"]
    return order_id, trace_id, root


def orphans(spans: list[ReceivedSpan], root: str) -> list[tuple[str, str]]:
    """The spans whose parent is neither in the trace nor the client's span."""
    ids = {span.span_id for span in spans}
    return [(s.service, s.name) for s in spans if s.parent_span_id not in ids | {root}]


def assert_linked_to_their_producers(spans: list[ReceivedSpan]) -> None:
    for span in spans:
        if span.kind == "CONSUMER":
            assert (span.trace_id, span.parent_span_id) in span.links, span


def services_of(spans: list[ReceivedSpan]) -> set[str]:
    return {span.service for span in spans}


async def connected_trace(
    receiver: OtlpReceiver, trace_id: str, root: str, *, until
) -> list[ReceivedSpan]:
    """The trace's spans once `until(spans)` holds and every span's parent has arrived (a
    producer's span may end, and be exported, after its consumer's)."""

    async def complete() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace_id)
        return spans if until(spans) and not orphans(spans, root) else None

    return await eventually(complete, timeout_s=20, what="a connected trace")


async def test_an_approved_order_is_one_trace_across_every_service(world):
    system, gateway, receiver = world
    shop = Shop(system)
    try:
        ada = await shop.register()
        product = await shop.product(stock=10)
        order_id, trace_id, root = await place(gateway, ada.access_token, product.product_id, 1)
        assert (await shop.settled(ada, order_id)).status == order_pb.ORDER_STATUS_APPROVED
    finally:
        await shop.close()

    every = {"gateway", "order", "inventory", "user", "notification"}
    spans = await connected_trace(
        receiver, trace_id, root, until=lambda spans: every <= services_of(spans)
    )
    assert_linked_to_their_producers(spans)
    kinds = {(s.service, s.kind) for s in spans}
    assert ("gateway", "SERVER") in kinds  # Envoy's, a child of the client's span
    assert ("order", "SERVER") in kinds  # PlaceOrder
    assert {("order", "PRODUCER"), ("inventory", "CONSUMER"), ("user", "CONSUMER")} <= kinds
    events = {event for s in spans for event in s.events}
    assert {
        "saga SAGA_STARTED",
        "saga COMMAND_SENT",
        "saga REPLY_RECEIVED",
        "saga SAGA_ENDED",
    } <= events


async def test_a_rejected_orders_trace_holds_its_compensation(world):
    system, gateway, receiver = world
    shop = Shop(system)
    try:
        ada = await shop.register()
        # More than the credit of a new account: stock is reserved, credit refused, then the
        # reservation is released (the compensation).
        product = await shop.product(price_minor=10_000_000, stock=10)
        order_id, trace_id, root = await place(gateway, ada.access_token, product.product_id, 1)
        assert (await shop.settled(ada, order_id)).status == order_pb.ORDER_STATUS_REJECTED
    finally:
        await shop.close()

    def compensated(spans: list[ReceivedSpan]) -> bool:
        inventory = [s for s in spans if s.service == "inventory" and s.kind == "CONSUMER"]
        return len(inventory) >= 2 and any("saga SAGA_ENDED" in s.events for s in spans)

    spans = await connected_trace(receiver, trace_id, root, until=compensated)
    assert_linked_to_their_producers(spans)
    events = {event for s in spans for event in s.events}
    assert "saga COMPENSATION_SENT" in events
