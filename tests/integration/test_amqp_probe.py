"""The broker's readiness probe (`ordermesh.health.amqp_probe`) against a real RabbitMQ node: a
round trip on one channel kept for it, failing while the broker does not answer and passing
again once it does, with still one channel after a hang and after a restart."""

import asyncio
import os
import signal
import time

import aio_pika
import pytest
from ordermesh.health import amqp_probe


def channels_of_connections(broker) -> list[int]:
    listed = broker.ctl("list_connections", "channels", "--no-table-headers", "--quiet")
    return [int(line) for line in listed.split()]


async def passes_again(probe, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            await asyncio.wait_for(probe(), 2)
            return
        except Exception:  # noqa: BLE001 - any failure of the probe: not ready yet
            assert time.monotonic() < deadline, "the probe did not pass again"
            await asyncio.sleep(0.2)


async def one_channel_open(broker) -> None:
    """The connection holds one channel, the probe's (a discarded one may still be closing)."""
    deadline = time.monotonic() + 10
    while (channels := channels_of_connections(broker)) != [1]:
        assert time.monotonic() < deadline, f"channels of the connections: {channels}"
        await asyncio.sleep(0.2)


async def test_the_probe_keeps_one_channel_through_a_hung_and_a_restarted_broker(
    rabbitmq_factory,
):
    broker = rabbitmq_factory()
    connection = await aio_pika.connect_robust(broker.url)
    probe = amqp_probe(connection)
    try:
        for _ in range(5):
            await asyncio.wait_for(probe(), 5)
        # One channel, open between probes: not one opened and closed by each.
        assert channels_of_connections(broker) == [1]

        group = os.getpgid(broker.process.pid)
        os.killpg(group, signal.SIGSTOP)  # hung: the connection stays, nothing answers
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(probe(), 0.5)
        finally:
            os.killpg(group, signal.SIGCONT)
        await passes_again(probe)
        await one_channel_open(broker)

        broker.stop()
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the closed connection says
            await asyncio.wait_for(probe(), 2)
        broker.start()
        await passes_again(probe)  # the robust connection is back, and a channel with it
        await one_channel_open(broker)
    finally:
        await connection.close()
