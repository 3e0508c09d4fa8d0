"""Chaos on the event backbone: processes killed mid-flow, and nothing lost or applied twice.

Every process here (broker, producer, consumer) is started by the test and killed by it, by
PID. What is reconciled is durable: the producer's outbox (every committed event), the
consumer's inbox (every event handled) and per-product totals (the effect, which would be too
large if an event were applied twice), and the dead-letter queue.

RabbitMQ 3.10.8 forgets a quorum queue declared less than about 3 minutes before a SIGKILL (see
docs/findings.md), so each test lets the consumer declare its topology and restarts the broker
cleanly once before the chaos begins.
"""

import asyncio
from pathlib import Path

import pytest

from harness import ManagedProcess
from tests.integration.flow import app, assert_exactly_once, inbox, outbox, query, wait_until


class Flow:
    """A private broker, a consumer and a producer database, for one chaos test."""

    def __init__(self, broker, directory: Path):
        self.broker = broker
        self.directory = directory
        self.producer_db = directory / "producer.db"
        self.consumer_db = directory / "consumer.db"
        self.consumer = app("consume", directory, "--store", f"sqlite:///{self.consumer_db}",
                            "--amqp", broker.url)  # fmt: skip

    async def prepare(self) -> None:
        await asyncio.to_thread(self.consumer.start)
        await asyncio.to_thread(self.broker.stop)
        await asyncio.to_thread(self.broker.start)

    def producer(self, total: int, *options: str) -> ManagedProcess:
        return app("produce", self.directory, "--store", f"sqlite:///{self.producer_db}",
                   "--amqp", self.broker.url, "--total", str(total), *options)  # fmt: skip

    async def settled(self, total: int, timeout_s: float = 180) -> None:
        await wait_until(lambda: len(inbox(self.consumer_db)) >= total, timeout_s,
                         f"{total} events handled")  # fmt: skip

    async def assert_exactly_once(self, total: int) -> None:
        await assert_exactly_once(self.producer_db, self.consumer_db, self.broker.url, total)

    def stop(self) -> None:
        self.consumer.stop()


@pytest.fixture
def flow(rabbitmq_factory, tmp_path):
    flow = Flow(rabbitmq_factory(), tmp_path)
    yield flow
    flow.stop()


async def test_broker_killed_five_times_during_the_flow_loses_and_duplicates_nothing(flow):
    total = 20_000
    await flow.prepare()
    producer = flow.producer(total, "--rate", "500")
    await asyncio.to_thread(producer.start)

    for _ in range(5):
        await asyncio.sleep(3)
        await asyncio.to_thread(flow.broker.kill)
        await asyncio.to_thread(flow.broker.start)

    await wait_until(lambda: not producer.running, 240, "the producer to confirm everything")
    await flow.settled(total)
    await flow.assert_exactly_once(total)


async def test_without_publisher_confirms_the_same_harness_detects_loss(flow):
    """The negative control: if this passed with confirms on, the harness would be blind."""
    total = 20_000
    await flow.prepare()
    producer = flow.producer(total, "--rate", "2000", "--no-confirms")
    await asyncio.to_thread(producer.start)

    for _ in range(3):
        await asyncio.sleep(2)
        await asyncio.to_thread(flow.broker.kill)
        await asyncio.to_thread(flow.broker.start)

    await wait_until(lambda: not producer.running, 240, "the producer to finish")
    previous = -1
    while (handled := len(inbox(flow.consumer_db))) != previous:  # until the consumer is idle
        previous = handled
        await asyncio.sleep(3)
    committed, _ = outbox(flow.producer_db)
    lost = len(set(committed) - set(inbox(flow.consumer_db)))
    print(f"negative control: {lost} of {total} committed events lost without confirms")
    assert lost > 0


async def test_consumer_killed_repeatedly_while_draining_applies_each_event_once(flow):
    total = 30_000
    await flow.prepare()
    flow.consumer.stop()
    producer = flow.producer(total)
    await asyncio.to_thread(producer.start)
    await wait_until(lambda: not producer.running, 120, "the backlog to be published")

    await asyncio.to_thread(flow.consumer.start)
    kills = 0
    while len(inbox(flow.consumer_db)) < total and kills < 6:
        await asyncio.sleep(0.5)
        handled = len(inbox(flow.consumer_db))
        if handled >= total:
            break
        # A kill of the consumer while it subscribed and was part-way through the backlog.
        assert flow.consumer.running
        await asyncio.to_thread(flow.consumer.kill)
        kills += 1
        await asyncio.to_thread(flow.consumer.start)  # ready: this start's subscription is up

    await flow.settled(total)
    await flow.assert_exactly_once(total)
    duplicates = flow.consumer.log_path.read_text().count('"duplicate absorbed"')
    redelivered = len(query(flow.consumer_db, "SELECT id FROM doc_redelivered"))
    print(
        f"consumer killed {kills} times: {redelivered} interrupted deliveries came again and "
        f"were applied once; {duplicates} applied before a kill were absorbed as duplicates"
    )
    assert kills >= 3
    assert redelivered > 0, "no kill interrupted a delivery: the test proved nothing"


async def test_producer_killed_between_commit_and_publish_publishes_every_committed_event(flow):
    total = 6_000
    await flow.prepare()
    caught_unpublished = 0
    for _ in range(4):
        # The relay starts 3 s after the producer; the kill comes before, after commits.
        producer = flow.producer(total, "--rate", "400", "--relay-delay", "3")
        await asyncio.to_thread(producer.start)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(producer.kill)
        _, unconfirmed = outbox(flow.producer_db)
        caught_unpublished += unconfirmed > 0

    final = flow.producer(total, "--rate", "2000")
    await asyncio.to_thread(final.start)
    await wait_until(lambda: not final.running, 120, "the producer to finish")
    await flow.settled(total)
    await flow.assert_exactly_once(total)
    assert caught_unpublished == 4, "each kill should leave committed, unpublished events"
