"""The running services implement every RPC of their contracts, and every event or command a
service publishes is decoded by every consumer that declares it."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import aio_pika
import aiormq.abc
import grpc
import pytest
from google.protobuf import descriptor_pool, symbol_database
from order.v1 import order_service_pb2 as order_pb
from ordermesh import contracts
from ordermesh.events import TypeRegistry, route_of
from ordermesh.gateway.contracts import IDEMPOTENCY_KEY
from ordermesh.topology import declare_exchange
from user.v1 import user_service_pb2 as user_pb

from harness.shop import eventually
from services import catalogue, messaging

SERVICES = {service.name: service.serves[0] for service in catalogue.CATALOGUE.domain_services()}


def _generated(package: str, kind: str) -> str | None:
    """The module of a package's events or commands, if it has them."""
    name = contracts.module_name(f"{package.replace('.', '/')}/{kind}.proto")
    try:
        return name if importlib.util.find_spec(name) else None
    except ModuleNotFoundError:  # a package of the runtime's (ops.v1) has no such module
        return None


ROUTED_MODULES = [
    module
    for service in catalogue.CATALOGUE.domain_services()
    for package in service.packages
    for kind in ("events", "commands")
    if (module := _generated(package, kind))
]


def subscriptions():
    """Every consumer subscription of every domain service (auth's events are its own test's)."""
    return [s for name, found in messaging.subscriptions().items() if name != "auth" for s in found]


def routed_types():
    types = []
    for module_name in ROUTED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.DESCRIPTOR.message_types_by_name:
            message_type = getattr(module, name)
            try:
                route_of(message_type)
            except ValueError:
                continue
            types.append(message_type)
    return types


METHODS = [
    (service, method)
    for service, full_name in SERVICES.items()
    for method in descriptor_pool.Default().FindServiceByName(full_name).methods
]


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
async def test_every_rpc_answers_an_empty_request_without_unimplemented_or_crash(
    shop, system, service, method
):
    admin = await shop.admin()
    database = symbol_database.Default()
    request_type = database.GetSymbol(method.input_type.full_name)
    response_type = database.GetSymbol(method.output_type.full_name)
    async with grpc.aio.insecure_channel(system.address(service)) as channel:
        call = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            await call(request_type(), metadata=admin.metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            answer = (error.code(), error.details())
        else:
            answer = (grpc.StatusCode.OK, "")
    code, details = answer
    if IDEMPOTENCY_KEY in request_type.DESCRIPTOR.fields_by_name:
        # The gateway sends such a write again after a failure (ordermesh.gateway.envoy): it is safe
        # only because the service applies it once per key, and so requires one.
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method.full_name}: {code.name}"
        assert IDEMPOTENCY_KEY in details
    assert code not in (
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    ), f"{method.full_name}: {code.name} {details}"
    assert code == grpc.StatusCode.OK or details, f"{method.full_name}: {code.name} says nothing"


async def test_every_published_message_decodes_in_every_consumer_that_declares_it(shop, system):
    connection = await aio_pika.connect(system.amqp_url)
    # As consumers take them (ordermesh.consumer): aiormq's deliveries, decoded by TypeRegistry.
    seen: list[aiormq.abc.DeliveredMessage] = []
    try:
        channel = await connection.channel()
        tap = await channel.declare_queue(f"contract-tap-{uuid.uuid4().hex}", exclusive=True)
        for message_type in routed_types():
            route = route_of(message_type)
            exchange = await declare_exchange(channel, route)
            await tap.bind(exchange, routing_key=route.routing_key or "")

        async def keep(message: aiormq.abc.DeliveredMessage) -> None:
            seen.append(message)

        underlay = await channel.get_underlay_channel()
        await underlay.basic_consume(tap.name, keep, no_ack=True)
        await _every_kind_of_message(shop)
        # Every type the example's flows make (a service a project adds proves its own, in the
        # end-to-end test `new-service` writes for it).
        consumed = {t for s in subscriptions() for t in s.types}
        names = {
            t.DESCRIPTOR.full_name for t in consumed if t.DESCRIPTOR.file.package in FLOWS_MAKE
        }
        await eventually(
            lambda: names <= {type_of(m) for m in seen},
            timeout_s=30,
            what=f"consumed types never published: {names - {type_of(m) for m in seen}}",
        )
    finally:
        await connection.close()

    for subscription in subscriptions():
        registry = TypeRegistry(subscription.handled)
        for message in seen:
            if type_of(message) in registry:
                envelope, decoded = registry.decode(message)
                assert envelope.event_id == message.header.properties.message_id
                assert decoded.ByteSize() > 0, f"{subscription.queue()}: {type_of(message)} empty"


# The packages whose messages `_every_kind_of_message` makes.
FLOWS_MAKE = {"user.v1", "inventory.v1", "order.v1", "order.v2", "notification.v1"}


def type_of(message: aiormq.abc.DeliveredMessage) -> str:
    return message.header.properties.message_type or ""


async def _every_kind_of_message(shop) -> None:
    """Registration, preferences, an approved, a rejected and a cancelled order, a logout."""
    ada = await shop.register()
    await shop.users.UpdatePreferences(
        user_pb.UpdatePreferencesRequest(phone_number="+4915112345678"), metadata=ada.metadata
    )
    product = await shop.product(price_minor=100, stock=5)
    approved = await shop.place(ada, [(product.product_id, 1)])
    await shop.settled(ada, approved.order_id)
    await shop.orders.CancelOrder(
        order_pb.CancelOrderRequest(order_id=approved.order_id), metadata=ada.metadata
    )
    out_of_stock = await shop.place(ada, [(product.product_id, 6)])
    dear = await shop.product(price_minor=120_000, stock=1)
    over_credit = await shop.place(ada, [(dear.product_id, 1)])
    await asyncio.gather(*(shop.settled(ada, o.order_id) for o in (out_of_stock, over_credit)))
    await shop.users.Logout(user_pb.LogoutRequest(refresh_token=ada.refresh_token))
