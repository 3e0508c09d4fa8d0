"""The event backbone end to end on a real broker and a real SQLite store.

use case commit -> outbox -> relay -> RabbitMQ -> consumer -> handler + inbox commit -> ack,
with its failure paths: duplicates, transient errors, poison messages, unroutable commands.
"""

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
import uuid

import aio_pika
import pytest
from inventory.v1 import commands_pb2, events_pb2
from order.v1 import events_pb2 as order_v1
from order.v2 import events_pb2 as order_v2
from ordermesh.broker import Broker, NotConfirmed, Unroutable
from ordermesh.consumer import Consumer
from ordermesh.correlation import correlation_id
from ordermesh.dead_letter import held
from ordermesh.errors import FailedPrecondition
from ordermesh.events import CONTENT_TYPE, amqp_properties, outgoing
from ordermesh.ledger import Ledger
from ordermesh.message_history import Fate
from ordermesh.operations import OPERATOR_ACTIONS, Operations, Operator
from ordermesh.outbox import OutboxRelay
from ordermesh.store import Collection
from ordermesh.store.sqlite import SqliteStore
from ordermesh.topology import Subscription, declare_subscription, unrouted_queue

FAST_RETRIES = (0.1, 0.2)


@pytest.fixture
async def broker(amqp_url):
    broker = Broker(amqp_url, name="test")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "service.db")
    await store.open([Collection("stock")])
    yield store
    await store.close()


class StockCounter:
    """A handler with an effect to count: each StockAdjusted adds its delta to a document."""

    def __init__(self, fail_times: int = 0, error: type[Exception] = RuntimeError):
        self.fail_times = fail_times
        self.error = error
        self.calls = 0
        self.order: list[int] = []

    async def __call__(self, message, envelope, tx):
        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error(f"failure {self.calls}")
        document = await tx.get("stock", message.product_id)
        if document is None:
            await tx.insert("stock", message.product_id, {"total": message.delta})
        else:
            await tx.update("stock", {**document, "total": document["total"] + message.delta})
        self.order.append(message.available_stock)


async def totals(store) -> dict[str, int]:
    async with store.transaction() as tx:
        return {d["_id"]: d["total"] for d in await tx.find("stock")}


async def eventually(condition, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def stock_subscription(**options) -> Subscription:
    return Subscription(
        service="test", purpose=f"stock-{uuid.uuid4().hex[:6]}",
        types=[events_pb2.StockAdjusted], **{"retry_delays_s": FAST_RETRIES, **options},
    )  # fmt: skip


@pytest.fixture
async def consuming(broker, store):
    """Starts consumers for a test and stops them at its end."""
    started = []

    async def start(subscription, handler, ledger=None):
        consumer = Consumer(subscription, {events_pb2.StockAdjusted: handler},
                            store=store, broker=broker, ledger=ledger)  # fmt: skip
        await consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        await consumer.stop()


async def dead_letters(broker, subscription) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(subscription.dead_letter_queue, passive=True)
    found = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        found.append(message)
    await channel.close()
    return found


def adjusted(product_id: str, delta: int = 1, seq: int = 0) -> events_pb2.StockAdjusted:
    return events_pb2.StockAdjusted(product_id=product_id, delta=delta, available_stock=seq)


async def test_committed_events_flow_through_the_outbox_to_the_handler(broker, store, consuming):
    ledger = Ledger()
    counter = StockCounter()
    subscription = stock_subscription()
    counter_queue = subscription.queue()
    await consuming(subscription, counter, ledger)
    relay = OutboxRelay(store, broker, owner="test", ledger=ledger)
    relay.start()
    try:
        for i in range(20):
            async with store.transaction() as tx:
                tx.publish(outgoing(adjusted(f"p-{i % 4}", delta=i), producer="test"))

        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 20))
    finally:
        await relay.stop()

    assert await totals(store) == {f"p-{k}": sum(range(k, 20, 4)) for k in range(4)}
    assert await store.count_outbox() == (0, 20)
    assert ledger.count("published") == ledger.count("processed") == 20
    # Each one's age when processed, from its outbox row to its handler's commit: to the
    # microsecond (the occurred-at header), not in the timestamp property's whole seconds.
    labels = {"type": "inventory.v1.StockAdjusted", "queue": counter_queue}
    sample = ledger.registry.get_sample_value
    assert sample("ordermesh_message_age_seconds_count", labels) == 20
    assert sample("ordermesh_message_age_seconds_sum", labels) > 0
    assert sample("ordermesh_message_age_seconds_bucket", {**labels, "le": "60.0"}) == 20


async def test_what_another_instance_commits_is_published_without_waiting_for_a_poll(
    broker, store, consuming, tmp_path
):
    """Instances share their service's store and one of them relays: it watches the store, so
    the others' messages go out at once (with an hour between polls, the relay would find
    them only at a poll)."""
    ledger = Ledger()
    await consuming(stock_subscription(), StockCounter(), ledger)
    relay = OutboxRelay(store, broker, owner="test", ledger=ledger, poll_interval_s=3600)
    relay.start()
    other = SqliteStore(tmp_path / "service.db")
    await other.open()
    try:
        for i in range(10):
            async with other.transaction() as tx:
                tx.publish(outgoing(adjusted(f"p-{i}"), producer="test"))
            await asyncio.sleep(0.05)

        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 10))
    finally:
        await relay.stop()
        await other.close()
    assert await store.count_outbox() == (0, 10)


async def test_messages_of_one_key_arrive_in_the_order_they_were_committed(
    broker, store, consuming
):
    counter = StockCounter()
    subscription = stock_subscription(prefetch=1)
    await consuming(subscription, counter)
    async with store.transaction() as tx:
        for seq in range(60):
            tx.publish(outgoing(adjusted("p-1", seq=seq), producer="test"), key="p-1")

    await OutboxRelay(store, broker, owner="test").drain()

    await eventually(lambda: asyncio.sleep(0, len(counter.order) == 60))
    assert counter.order == list(range(60))


async def test_a_redelivered_event_has_no_second_effect(broker, store, consuming):
    ledger = Ledger()
    await consuming(stock_subscription(), StockCounter(), ledger)
    message = outgoing(adjusted("p-1", delta=5), producer="test")

    for _ in range(3):
        await broker.publish(message)

    await eventually(lambda: asyncio.sleep(0, ledger.count("delivered") == 3))
    await eventually(lambda: asyncio.sleep(0, ledger.count("duplicate") == 2))
    assert await totals(store) == {"p-1": 5}
    assert ledger.count("processed") == 1


async def test_a_handler_that_fails_is_retried_with_backoff_then_processed(
    broker, store, consuming
):
    ledger = Ledger()
    counter = StockCounter(fail_times=2)
    await consuming(stock_subscription(), counter, ledger)

    await broker.publish(outgoing(adjusted("p-1", delta=3), producer="test"))

    await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 1))
    assert counter.calls == 3
    assert ledger.count("retried") == 2
    assert await totals(store) == {"p-1": 3}


async def test_a_message_failing_every_retry_is_dead_lettered_with_its_reason(
    broker, store, consuming
):
    ledger = Ledger()
    subscription = stock_subscription()
    await consuming(subscription, StockCounter(fail_times=99), ledger)
    sent = outgoing(adjusted("p-1"), producer="test")

    await broker.publish(sent)

    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 1))
    [dead] = await dead_letters(broker, subscription)
    assert dead.message_id == sent.envelope.event_id
    assert dead.headers["x-error-class"] == "RuntimeError"
    assert dead.headers["x-error-message"] == "failure 3"
    assert dead.headers["x-attempts"] == 3
    assert dead.headers["x-original-exchange"] == "inventory.events"
    assert dead.headers["x-original-routing-key"] == "inventory.stock.adjusted"
    assert events_pb2.StockAdjusted.FromString(dead.body) == adjusted("p-1")
    assert await totals(store) == {}


async def test_a_domain_error_is_dead_lettered_at_once(broker, store, consuming):
    ledger = Ledger()
    subscription = stock_subscription()
    await consuming(subscription, StockCounter(fail_times=1, error=FailedPrecondition), ledger)

    await broker.publish(outgoing(adjusted("p-1"), producer="test"))

    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 1))
    [dead] = await dead_letters(broker, subscription)
    assert dead.headers["x-error-class"] == "FailedPrecondition"
    assert ledger.count("retried") == 0


async def test_poison_messages_are_dead_lettered_and_good_ones_still_processed(
    broker, store, consuming
):
    ledger = Ledger()
    subscription = stock_subscription()
    await consuming(subscription, StockCounter(), ledger)
    raw_channel = await broker.connection.channel()
    exchange = await raw_channel.get_exchange("inventory.events")
    key = "inventory.stock.adjusted"
    protobuf = {"type": "inventory.v1.StockAdjusted", "content_type": CONTENT_TYPE}
    poison = [
        aio_pika.Message(b"\xff\x00garbage", message_id="bad-1"),
        aio_pika.Message(b"x", message_id="bad-2", type="inventory.v1.Nonsense",
                         content_type=CONTENT_TYPE),
        aio_pika.Message(b"\x0a\x05ab", message_id="bad-3", **protobuf),  # truncated field
        aio_pika.Message(b"{}", message_id="bad-4", type="inventory.v1.StockAdjusted",
                         content_type="application/json"),
    ]  # fmt: skip

    for i, bad in enumerate(poison):
        await exchange.publish(bad, routing_key=key)
        await broker.publish(outgoing(adjusted(f"p-{i}"), producer="test"))
    await raw_channel.close()

    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 4))
    await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 4))
    reasons = sorted(m.headers["x-error-message"] for m in await dead_letters(broker, subscription))
    assert reasons == [
        "body is not a valid inventory.v1.StockAdjusted: Error parsing message with type "
        "'inventory.v1.StockAdjusted': Wire format was corrupt",
        "content type 'application/json' is not application/x-protobuf",
        "no type property: cannot tell which message this is",
        "unknown type 'inventory.v1.Nonsense': no handler declared for it",
    ]
    assert await totals(store) == {"p-0": 1, "p-1": 1, "p-2": 1, "p-3": 1}


async def test_a_command_without_a_handler_queue_is_unroutable(broker):
    command = commands_pb2.ReleaseStock(order_id=f"o-{uuid.uuid4().hex}")

    with pytest.raises(Unroutable, match=r"inventory\.v1\.ReleaseStock"):
        await broker.publish(outgoing(command, producer="test"))


async def test_an_event_nobody_subscribes_to_is_kept_not_dropped(broker):
    event = events_pb2.ProductCreated()

    await broker.publish(outgoing(event, producer="test"))

    channel = await broker.connection.channel()
    queue = await channel.declare_queue(unrouted_queue("inventory.events"), passive=True)
    kept = await queue.get(timeout=5)
    assert kept.type == "inventory.v1.ProductCreated"
    await channel.close()


def channels_of(rabbitmq, vhost: str, connection_name: str) -> list[int]:
    """The numbers of the channels open on the broker for the named connection."""
    listed = rabbitmq.ctl("list_connections", "-q", "--no-table-headers", "pid", "vhost",
                          "client_properties")  # fmt: skip
    [pid] = [row[0] for row in rows_of(listed) if row[1] == vhost and connection_name in row[2]]
    listed = rabbitmq.ctl("list_channels", "-q", "--no-table-headers", "connection", "number")
    return sorted(int(number) for connection, number in rows_of(listed) if connection == pid)


def rows_of(listed: str) -> list[list[str]]:
    return [line.split("\t") for line in listed.splitlines()]


async def test_a_publish_whose_confirm_does_not_come_in_time_is_retried_on_a_new_channel(
    rabbitmq, amqp_url, broker
):
    # A channel whose confirm never came may never confirm again (RabbitMQ before 4.2, after a
    # partition): the broker gives up on it, and what the caller retries goes out on another.
    vhost = amqp_url.rsplit("/", 1)[1]
    await broker.publish(outgoing(events_pb2.ProductCreated(), producer="test"))
    assert channels_of(rabbitmq, vhost, '"test"') == [1]

    with pytest.raises(NotConfirmed, match="no confirm before the timeout"):
        await broker.publish(outgoing(events_pb2.ProductCreated(), producer="test"), timeout_s=1e-6)
    await broker.publish(outgoing(events_pb2.ProductCreated(), producer="test"))

    assert channels_of(rabbitmq, vhost, '"test"') == [2], "the channel that timed out is closed"
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(unrouted_queue("inventory.events"), passive=True)
    assert (queue.declaration_result.message_count or 0) >= 2, "the retried publish is kept"
    await channel.close()


async def test_the_envelope_travels_in_amqp_properties(broker, store):
    message = outgoing(adjusted("p-1"), producer="inventory")

    amqp = amqp_properties(message.envelope)

    assert amqp.message_id == message.envelope.event_id
    assert amqp.message_type == "inventory.v1.StockAdjusted"
    assert amqp.content_type == "application/x-protobuf"
    assert amqp.delivery_mode == aio_pika.DeliveryMode.PERSISTENT.value
    assert amqp.correlation_id == message.envelope.correlation_id
    assert amqp.headers["producer"] == "inventory"
    assert amqp.headers["traceparent"].startswith("00-")


async def deadletters_cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ordermesh.deadletters", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_dead_letters_are_listed_with_their_reason_and_replayed_after_a_fix(
    broker, store, consuming, amqp_url, tmp_path
):
    ledger = Ledger()
    subscription = stock_subscription()
    # The handler refuses the first two messages (the bug), then works (the fix is deployed).
    await consuming(subscription, StockCounter(fail_times=2, error=FailedPrecondition), ledger)
    fixed, other = (outgoing(adjusted(p, delta=7), producer="test") for p in ("p-1", "p-2"))
    await broker.publish(fixed)
    await broker.publish(other)
    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 2))
    queue = subscription.dead_letter_queue

    listed = [json.loads(line) for line in (await deadletters_cli(
        "list", "--amqp", amqp_url, "--queue", queue)).splitlines()]  # fmt: skip

    assert {entry["event_id"] for entry in listed} == {
        fixed.envelope.event_id, other.envelope.event_id,
    }  # fmt: skip
    entry = next(e for e in listed if e["event_id"] == fixed.envelope.event_id)
    assert entry["type"] == "inventory.v1.StockAdjusted"
    assert entry["failure"]["error-class"] == "FailedPrecondition"
    assert entry["failure"]["consumer"] == subscription.queue()
    assert entry["original_route"] == ["inventory.events", "inventory.stock.adjusted"]
    assert entry["body"] == {"product_id": "p-1", "delta": "7"}

    assert entry["replays"] == []

    store_url = f"sqlite:///{tmp_path / 'service.db'}"
    replay = ("replay", "--amqp", amqp_url, "--store", store_url, "--queue", queue,
              "--id", fixed.envelope.event_id, "--reason", "the fix is deployed")  # fmt: skip
    replayed = await deadletters_cli(*replay)

    assert replayed.strip() == f"replayed 1 message(s) from {queue}"
    await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 1))
    assert await totals(store) == {"p-1": 7}
    [left] = json_lines(await deadletters_cli("list", "--amqp", amqp_url, "--queue", queue))
    assert left["event_id"] == other.envelope.event_id
    # Acting again on what was acted on changes nothing.
    assert (await deadletters_cli(*replay)).strip() == f"replayed 0 message(s) from {queue}"
    # The audit trail names who replayed it and why, beside what the service did with it.
    operations = Operations(service="inventory", store=store, broker=broker,
                            consumers=lambda: [subscription.queue()])  # fmt: skip
    history = await operations.history(event_ids=[fixed.envelope.event_id])
    [action] = [entry for entry in history if entry.fate == Fate.OPERATOR_ACTION]
    assert action.detail == "replayed: the fix is deployed"
    assert action.actor.startswith("cli:")
    assert action.where == queue
    assert [entry.fate for entry in history][-1] == Fate.PROCESSED


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


async def test_a_dead_letter_replayed_that_fails_again_shows_its_replay_and_can_be_discarded(
    broker, store, consuming, amqp_url, tmp_path
):
    subscription = stock_subscription()
    ledger = Ledger()
    await consuming(subscription, StockCounter(fail_times=99, error=FailedPrecondition), ledger)
    message = outgoing(adjusted("p-1", delta=3), producer="test")
    await broker.publish(message)
    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 1))
    queue = subscription.dead_letter_queue
    store_url = f"sqlite:///{tmp_path / 'service.db'}"
    await deadletters_cli("replay", "--amqp", amqp_url, "--store", store_url, "--queue", queue,
                          "--all", "--reason", "try once more")  # fmt: skip
    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 2))

    [again] = json_lines(await deadletters_cli("list", "--amqp", amqp_url, "--queue", queue))
    [replay] = again["replays"]
    assert replay["reason"] == "try once more"
    assert replay["queue"] == queue
    assert replay["by"].startswith("cli:")

    discard = ("discard", "--amqp", amqp_url, "--store", store_url, "--queue", queue,
               "--id", message.envelope.event_id, "--reason", "a test product")  # fmt: skip
    assert (await deadletters_cli(*discard)).strip() == f"discarded 1 message(s) from {queue}"
    assert json_lines(await deadletters_cli("list", "--amqp", amqp_url, "--queue", queue)) == []
    assert (await deadletters_cli(*discard)).strip() == f"discarded 0 message(s) from {queue}"
    assert await totals(store) == {}


async def test_a_discard_finds_the_dead_letter_a_listing_is_holding_at_that_moment(
    broker, store, consuming, tmp_path
):
    subscription = stock_subscription()
    ledger = Ledger()
    await consuming(subscription, StockCounter(fail_times=99, error=FailedPrecondition), ledger)
    message = outgoing(adjusted("p-1"), producer="test")
    await broker.publish(message)
    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 1))
    queue = subscription.dead_letter_queue
    audit = SqliteStore(tmp_path / "operations.db")
    await audit.open([OPERATOR_ACTIONS])
    operations = Operations(service="test", store=audit, broker=broker,
                            dead_letter_queues=lambda: [queue])  # fmt: skip
    operator = Operator(actor="ops@example.com", reason="a test product")

    async with held(broker.connection, queue) as listing:  # an operator's listing, under way
        assert len(listing) == 1
        discarding = asyncio.create_task(
            operations.discard(queue, [message.envelope.event_id], operator)
        )
        await asyncio.sleep(0.3)
    # The listing let go of it; the discard under way takes it.

    try:
        assert await discarding == 1
    finally:
        await audit.close()
    assert await dead_letters(broker, subscription) == []


class RefusesOneProduct(StockCounter):
    """Applies every adjustment except those of one product, which it can never apply."""

    def __init__(self, refused: str):
        super().__init__()
        self.refused = refused

    async def __call__(self, message, envelope, tx):
        if message.product_id == self.refused:
            raise FailedPrecondition(f"product {self.refused} is discontinued")
        await super().__call__(message, envelope, tx)


async def test_one_failing_message_in_a_batch_does_not_hold_back_the_others(
    broker, store, consuming
):
    ledger = Ledger()
    subscription = stock_subscription()
    first = await consuming(subscription, StockCounter(), Ledger())
    await first.stop()  # the queues exist; the backlog below arrives as one batch
    for i in range(30):
        await broker.publish(outgoing(adjusted("p-bad" if i == 17 else f"p-{i % 3}"),
                                      producer="test"))  # fmt: skip

    await consuming(subscription, RefusesOneProduct("p-bad"), ledger)

    await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 29))
    await eventually(lambda: asyncio.sleep(0, ledger.count("dead_lettered") == 1))
    assert await totals(store) == {"p-0": 10, "p-1": 10, "p-2": 9}
    [dead] = await dead_letters(broker, subscription)
    assert dead.headers["x-error-message"] == "product p-bad is discontinued"


async def test_a_consumer_whose_queue_is_deleted_subscribes_again(broker, store, consuming):
    """The broker cancels a subscription whose queue is deleted (an operator's mistake); the
    consumer declares it again, bindings included, and events published after that arrive."""
    ledger = Ledger()
    subscription = stock_subscription()
    await consuming(subscription, StockCounter(), ledger)
    channel = await broker.connection.channel()
    await channel.queue_delete(subscription.queue())
    await channel.close()

    async def delivered_after_resubscribing() -> bool:
        # Until the queue and its binding are back, events go to the exchange's unrouted queue.
        await broker.publish(outgoing(adjusted("p-1"), producer="test"))
        await asyncio.sleep(0.2)
        return ledger.count("processed") > 0

    await eventually(delivered_after_resubscribing)
    assert await totals(store) == {"p-1": ledger.count("processed")}


def with_correlation(message, correlation: str):
    """The message with another correlation id, as a row written before the edges checked it."""
    return dataclasses.replace(
        message, envelope=dataclasses.replace(message.envelope, correlation_id=correlation)
    )


async def outbox_cli(*args: str) -> list[dict]:
    return [json.loads(line) for line in (await deadletters_cli(*args)).splitlines()]


async def test_a_message_amqp_cannot_carry_is_parked_and_the_relay_goes_on(
    broker, store, consuming, tmp_path
):
    """A correlation id over AMQP's 255 bytes cannot be sent, ever: the row is parked with the
    reason, and the rows after it, of its key and of others, are published."""
    ledger = Ledger()
    counter = StockCounter()
    await consuming(stock_subscription(prefetch=1), counter, ledger)
    bad = with_correlation(outgoing(adjusted("p-1", seq=1), producer="test"), "c" * 300)
    async with store.transaction() as tx:
        tx.publish(outgoing(adjusted("p-1", seq=0), producer="test"), key="p-1")
        tx.publish(bad, key="p-1")
        tx.publish(outgoing(adjusted("p-1", seq=2), producer="test"), key="p-1")
        tx.publish(outgoing(adjusted("p-2", seq=3), producer="test"))
    relay = OutboxRelay(store, broker, owner="test", ledger=ledger)
    relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 3))
    finally:
        await relay.stop()

    assert sorted(counter.order) == [0, 2, 3]
    assert [seq for seq in counter.order if seq != 3] == [0, 2]  # key p-1 kept its order
    assert await store.count_outbox() == (0, 3)
    assert ledger.count("parked") == 1
    [parked] = await outbox_cli("parked", "--store", f"sqlite:///{tmp_path / 'service.db'}")
    assert parked["event_id"] == bad.envelope.event_id
    assert parked["type"] == "inventory.v1.StockAdjusted"
    assert parked["route"] == ["inventory.events", "inventory.stock.adjusted"]
    assert "AMQP cannot carry it: string exceeds maximum length of 255 bytes" in parked["reason"]
    assert parked["body"] == {"product_id": "p-1", "delta": "1", "available_stock": "1"}


@pytest.fixture
def small_messages(rabbitmq):
    """The session broker refuses messages over 4 KiB on channels opened meanwhile."""
    rabbitmq.ctl("eval", "application:set_env(rabbit, max_message_size, 4096).")
    yield
    rabbitmq.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")


async def test_a_message_the_broker_refuses_is_parked_alone_and_replayed_after_a_fix(
    small_messages, amqp_url, store, consuming, tmp_path, rabbitmq
):
    """The broker closes the channel over one message too large for it, failing every publish
    in flight: only the one refused while alone is parked; `unpark` sends it once allowed."""
    ledger = Ledger()
    counter = StockCounter()
    await consuming(stock_subscription(), counter, ledger)
    broker = Broker(amqp_url, name="relay")  # its channel is opened under the small limit
    await broker.connect()
    large = outgoing(adjusted("p-large" + "x" * 5000, seq=99), producer="test")
    async with store.transaction() as tx:
        for i in range(20):
            tx.publish(outgoing(adjusted(f"p-{i}", seq=i), producer="test"))
            if i == 10:
                tx.publish(large)
    relay = OutboxRelay(store, broker, owner="test", ledger=ledger, poll_interval_s=0.2)
    relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, ledger.count("parked") == 1))
        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 20))
        store_url = f"sqlite:///{tmp_path / 'service.db'}"
        [parked] = await outbox_cli("parked", "--store", store_url)
        assert parked["event_id"] == large.envelope.event_id
        assert "message size 50" in parked["reason"]
        assert "larger than configured max size 4096" in parked["reason"]

        rabbitmq.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")
        await broker.close()  # a new channel takes the broker's new limit
        await broker.connect()
        unparked = await deadletters_cli(
            "unpark", "--store", store_url, "--all", "--reason", "the limit is raised"
        )

        assert unparked.strip() == "1 parked message(s) pending again"
        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 21))
    finally:
        await relay.stop()
        await broker.close()
    assert sorted(counter.order) == [*range(20), 99]
    assert await store.count_outbox() == (0, 21)
    assert await outbox_cli("parked", "--store", store_url) == []


async def test_a_consumer_replaces_a_correlation_id_that_is_not_a_safe_token(
    broker, store, consuming
):
    seen: list[str | None] = []

    async def handler(message, envelope, tx):
        seen.append(correlation_id.get())

    await consuming(stock_subscription(), handler)
    channel = await broker.connection.channel()
    exchange = await channel.get_exchange("inventory.events")
    for correlation in ("c-fine", "not fine; has spaces", "x" * 200):
        message = aio_pika.Message(
            adjusted("p-1").SerializeToString(),
            message_id=str(uuid.uuid4()),
            type="inventory.v1.StockAdjusted",
            content_type=CONTENT_TYPE,
            correlation_id=correlation,
        )
        await exchange.publish(message, routing_key="inventory.stock.adjusted")
    await channel.close()

    await eventually(lambda: asyncio.sleep(0, len(seen) == 3))
    assert seen[0] == "c-fine"
    assert all(uuid.UUID(replaced) for replaced in seen[1:])


# Infrastructure faults: the message is not at fault, so it waits for the infrastructure and is
# then processed; it uses up no retry step and never reaches the dead-letter queue.

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


async def test_a_store_locked_past_its_busy_timeout_holds_the_message_until_it_is_free(
    broker, consuming, tmp_path
):
    store = SqliteStore(tmp_path / "locked.db", busy_timeout_s=0.2)
    await store.open([Collection("stock")])
    ledger = Ledger()
    try:
        consumer = Consumer(stock_subscription(), {events_pb2.StockAdjusted: StockCounter()},
                            store=store, broker=broker, ledger=ledger)  # fmt: skip
        await consumer.start()
        # Another process takes the write lock for 3 s: 15 busy timeouts of the consumer's store.
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_LOCK, str(tmp_path / "locked.db"), "3",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert await holder.stdout.readline() == b"locked\n"

        await broker.publish(outgoing(adjusted("p-1", delta=4), producer="test"))
        await eventually(lambda: asyncio.sleep(0, ledger.count("delivered") == 1))
        await holder.wait()

        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 1))
        await consumer.stop()
        assert ledger.count("retried") == ledger.count("dead_lettered") == 0
        assert await totals(store) == {"p-1": 4}
    finally:
        await store.close()


class WritesLargeDocuments(StockCounter):
    async def __call__(self, message, envelope, tx):
        await tx.insert("stock", f"{message.product_id}-{uuid.uuid4()}", {"blob": "x" * 65536})
        self.calls += 1


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system of the test's own (tmpfs), unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a file system of the test's own: {mounted.stderr}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


async def test_a_full_disk_holds_the_message_until_there_is_room(broker, small_disk):
    store = SqliteStore(small_disk / "full.db")
    await store.open([Collection("stock")])
    ledger = Ledger()
    handler = WritesLargeDocuments()
    try:
        consumer = Consumer(stock_subscription(), {events_pb2.StockAdjusted: handler},
                            store=store, broker=broker, ledger=ledger)  # fmt: skip
        await consumer.start()
        filler = small_disk / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:  # until the disk is full
                f.write(b"\0" * 65536)
                f.flush()

        await broker.publish(outgoing(adjusted("p-1"), producer="test"))
        await eventually(lambda: asyncio.sleep(0, ledger.count("delivered") == 1))
        await asyncio.sleep(2)  # the message meets the full disk, again and again
        assert ledger.count("processed") == 0
        filler.unlink()

        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 1))
        await consumer.stop()
        assert ledger.count("retried") == ledger.count("dead_lettered") == 0
    finally:
        await store.close()


class SendsFailAtFirst(Broker):
    """A real broker connection whose first sends (the consumer's retry and dead-letter
    publishes) fail as if the broker had not confirmed them: a fault injected into settling."""

    def __init__(self, url: str, *, failures: int):
        super().__init__(url, name="failing-sends")
        self.failures = failures

    async def send(self, message, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise NotConfirmed("injected: no confirm before the timeout")
        await super().send(message, **kwargs)


async def test_a_message_whose_settling_fails_holds_back_the_rest_and_nothing_is_acked_unprocessed(
    broker, store, consuming, amqp_url
):
    """One failing message of a batch must be sent to its retry queue; that send fails twice.
    The other messages of the batch, and those after it, are all processed: none is acked by a
    later batch's ack without having been processed."""
    subscription = stock_subscription()
    first = await consuming(subscription, StockCounter(), Ledger())
    await first.stop()  # the queues exist; the backlog below arrives as one batch
    for i in range(10):
        await broker.publish(outgoing(adjusted(f"p-{i}", seq=i), producer="test"))
    failing = SendsFailAtFirst(amqp_url, failures=2)
    await failing.connect()
    ledger = Ledger()

    class FailsOnP3UntilRetried(StockCounter):
        """Fails p-3 in the batch's transaction and in its own; it succeeds once retried."""

        async def __call__(self, message, envelope, tx):
            if message.product_id == "p-3" and "x-attempts" not in envelope.headers:
                raise RuntimeError("p-3 fails until retried")
            await super().__call__(message, envelope, tx)

    handler = FailsOnP3UntilRetried()
    consumer = Consumer(subscription, {events_pb2.StockAdjusted: handler},
                        store=store, broker=failing, ledger=ledger)  # fmt: skip
    try:
        await consumer.start()
        await eventually(lambda: asyncio.sleep(0, ledger.count("retried") == 1))
        for i in range(10, 15):  # later deliveries, acked as a batch
            await broker.publish(outgoing(adjusted(f"p-{i}", seq=i), producer="test"))

        await eventually(lambda: asyncio.sleep(0, ledger.count("processed") == 15))
    finally:
        await consumer.stop()
        await failing.close()
    assert failing.failures == 0
    assert sorted(handler.order) == list(range(15))
    assert await totals(store) == {f"p-{i}": 1 for i in range(15)}


async def test_a_consumer_moving_to_a_successor_type_still_takes_what_was_queued_in_the_old(
    broker, store
):
    """docs/versioning.md: order.v1.OrderApproved is replaced by order.v2.OrderApproved; the
    producer publishes both; the consumer moves to v2 with v1 `draining`."""
    purpose = f"approvals-{uuid.uuid4().hex[:6]}"
    before = Subscription(service="test", purpose=purpose, types=[order_v1.OrderApproved])
    after = dataclasses.replace(
        before, types=[order_v2.OrderApproved], draining=[order_v1.OrderApproved]
    )
    channel = await broker.connection.channel()
    await declare_subscription(channel, before)
    # Approvals committed before the consumer moved: each in both versions, only v1 is bound.
    for n in range(3):
        for event in (
            order_v2.OrderApproved(order_id=f"o-{n}"),
            order_v1.OrderApproved(order_id=f"o-{n}"),
        ):
            await broker.publish(outgoing(event, producer="test"))
    taken: list[tuple[str, str]] = []

    async def take(message, envelope, tx):
        taken.append((envelope.type, message.order_id))

    moved = Consumer(after, {order_v2.OrderApproved: take, order_v1.OrderApproved: take},
                     store=store, broker=broker)  # fmt: skip
    await moved.start()
    try:
        # And after: the v2 copy reaches the queue, the v1 one no longer does.
        for event in (
            order_v2.OrderApproved(order_id="o-3"),
            order_v1.OrderApproved(order_id="o-3"),
        ):
            await broker.publish(outgoing(event, producer="test"))
        await eventually(lambda: asyncio.sleep(0, len(taken) == 4))
        await asyncio.sleep(0.5)  # nothing else comes
    finally:
        await moved.stop()

    assert sorted(taken) == [
        *(("order.v1.OrderApproved", f"o-{n}") for n in range(3)),
        ("order.v2.OrderApproved", "o-3"),
    ]
    dead = await channel.declare_queue(after.dead_letter_queue, passive=True)
    assert dead.declaration_result.message_count == 0
    await channel.close()
