"""The operator API through the gateway: a message a service could not handle is seen by an
admin in that service's dead letters, decoded, with its failure; replayed and discarded with a
reason, each action recorded with who took it; the gateway routes each call to the service it
names, and nobody but an admin gets in."""

from __future__ import annotations

import uuid

import aio_pika
import grpc
import pytest
from ordermesh.contracts.ops.v1 import ops_service_pb2 as ops_pb
from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc as ops_grpc
from ordermesh.gateway.contracts import ADDRESS_HEADER

from harness.rest import Rest
from harness.shop import Shop, eventually


async def a_message_inventory_cannot_read(amqp_url: str) -> str:
    """A ReserveStock command whose body is no ReserveStock: dead-lettered at once."""
    event_id = str(uuid.uuid4())
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("inventory.commands")
        await exchange.publish(
            aio_pika.Message(
                b"\xff\xfe not protobuf",
                message_id=event_id,
                type="inventory.v1.ReserveStock",
                correlation_id=f"ops-test-{event_id[:8]}",
                content_type="application/x-protobuf",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="inventory.reserve_stock",
        )
    return event_id


async def test_an_admin_sees_a_dead_letter_replays_and_discards_it_each_action_recorded(
    system, gateway
):
    shop = Shop(system)
    rest = Rest(gateway.url)
    try:
        admin = await shop.admin()
        token = admin.access_token
        event_id = await a_message_inventory_cannot_read(system.amqp_url)
        ops = "/v1/ops/inventory"

        async def listed() -> dict | None:
            letters = await rest.call("ListDeadLetters", "GET", f"{ops}/dead-letters", token=token)
            found = [d for d in letters["deadLetters"] if d["eventId"] == event_id]
            return found[0] if found else None

        letter = await eventually(listed, what="the message in inventory's dead letters")
        assert letter["type"] == "inventory.v1.ReserveStock"
        assert letter["failure"]["errorClass"]
        assert letter["failure"]["consumer"].startswith("inventory.")
        assert letter["originalExchange"] == "inventory.commands"
        assert letter["originalRoutingKey"] == "inventory.reserve_stock"
        queue = letter["queue"]

        replay = {"queue": queue, "eventIds": [event_id], "reason": "after the fix"}
        replayed = await rest.call(
            "ReplayDeadLetters", "POST", f"{ops}/dead-letters:replay", replay, token=token
        )
        assert replayed == {"replayed": 1}

        async def failed_again() -> dict | None:
            again = await listed()
            return again if again and again["replays"] else None

        # It fails again (it is still no ReserveStock), now carrying its replay.
        again = await eventually(failed_again, what="the replayed message dead-lettered again")
        [replay_record] = again["replays"]
        assert replay_record["actor"] == admin.user_id
        assert replay_record["reason"] == "after the fix"

        discard = {"queue": queue, "eventIds": [event_id], "reason": "it can never be read"}
        path = f"{ops}/dead-letters:discard"
        assert await rest.call("DiscardDeadLetters", "POST", path, discard, token=token) == {
            "discarded": 1
        }
        assert await rest.call("DiscardDeadLetters", "POST", path, discard, token=token) == {
            "discarded": 0
        }
        assert await listed() is None

        history = await rest.call(
            "GetMessageHistory", "GET", f"{ops}/message-history?eventIds={event_id}", token=token
        )
        actions = [e for e in history["entries"] if e["fate"] == "MESSAGE_FATE_OPERATOR_ACTION"]
        assert [(a["detail"], a["actor"]) for a in actions] == [
            ("replayed: after the fix", admin.user_id),
            ("discarded: it can never be read", admin.user_id),
        ]
        # Each service answers for its own queues only.
        users = await rest.call("ListDeadLetters", "GET", "/v1/ops/user/dead-letters", token=token)
        assert all(q["name"].startswith("user.") for q in users["queues"])
    finally:
        await rest.close()
        await shop.close()


async def test_a_grpc_call_is_routed_by_the_service_it_names_and_refused_if_the_names_differ(
    system, gateway
):
    shop = Shop(system)
    try:
        admin = await shop.admin()
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = ops_grpc.OperatorServiceStub(channel)
            for service in ("user", "inventory", "order", "notification", "auth"):
                answer = await stub.ListDeadLetters(
                    ops_pb.ListDeadLettersRequest(service=service),
                    metadata=[*admin.metadata, (ADDRESS_HEADER, service)],
                    timeout=10,
                )
                assert all(q.name.startswith(f"{service}.") for q in answer.queues), service
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListDeadLetters(
                    ops_pb.ListDeadLettersRequest(service="user"),
                    metadata=[*admin.metadata, (ADDRESS_HEADER, "order")],
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "'user' is not this service ('order')" in (refused.value.details() or "")
    finally:
        await shop.close()


async def test_a_customer_and_an_anonymous_caller_are_refused_by_the_gateway(system, gateway):
    shop = Shop(system)
    rest = Rest(gateway.url)
    try:
        customer = await shop.register()
        path = "/v1/ops/order/sagas"
        await rest.call("ListSagas", "GET", path, token=customer.access_token, expect=403)
        await rest.call("ListSagas", "GET", path, expect=401)
        discard = {"queue": "order.saga.dlq", "eventIds": ["x"], "reason": "mine now"}
        await rest.call(
            "DiscardDeadLetters",
            "POST",
            "/v1/ops/order/dead-letters:discard",
            discard,
            token=customer.access_token,
            expect=403,
        )
        # A service the system does not have has no route.
        admin = await shop.admin()
        async with rest.http.get(
            f"{gateway.url}/v1/ops/nosuch/dead-letters", headers=admin_header(admin)
        ) as response:
            assert response.status == 404
    finally:
        await rest.close()
        await shop.close()


def admin_header(admin) -> dict[str, str]:
    return {"authorization": f"Bearer {admin.access_token}"}
