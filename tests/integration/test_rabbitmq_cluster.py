"""A cluster of three private RabbitMQ nodes (issue 14): it forms by itself, a quorum queue is
replicated on every node, and a message confirmed before its queue's leader is SIGKILLed is
delivered by the nodes that remain; the killed node comes back into the cluster.

The cluster is this module's own: it kills its nodes.
"""

import asyncio

import aio_pika
import pytest

from harness.rabbitmq import PrivateRabbitMQCluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    running = PrivateRabbitMQCluster(tmp_path_factory.mktemp("cluster"), size=3)
    try:
        running.start()
        yield running
    finally:
        running.remove()


def queue_of(cluster: PrivateRabbitMQCluster, name: str) -> tuple[str, list[str]]:
    """(leader, members) of a quorum queue, as a live node tells."""
    live = next(node for node in cluster.nodes if node.process.running)
    for line in live.ctl(
        "list_queues", "name", "leader", "members", "--no-table-headers"
    ).splitlines():
        fields = line.split("\t")
        if fields[0] == name:
            return fields[1], sorted(m.strip() for m in fields[2].strip("[]").split(","))
    raise AssertionError(f"no queue {name}")


async def test_the_nodes_form_one_cluster_and_a_quorum_queue_has_a_replica_on_each(cluster):
    assert cluster.running_nodes() == sorted(node.node for node in cluster.nodes)
    connection = await aio_pika.connect(cluster.nodes[1].url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            "replicated", durable=True, arguments={"x-queue-type": "quorum"}
        )

    _, members = queue_of(cluster, "replicated")
    assert members == sorted(node.node for node in cluster.nodes)


async def test_a_message_confirmed_before_its_leader_is_killed_is_delivered_by_the_others(
    cluster,
):
    first = cluster.nodes[0]
    connection = await aio_pika.connect(first.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("survives", durable=True, arguments={"x-queue-type": "quorum"})
        for n in range(100):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m-{n}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="survives",
                mandatory=True,
            )  # each confirmed by a majority of the replicas before it returns

    leader, _ = queue_of(cluster, "survives")
    victim = next(node for node in cluster.nodes if node.node == leader)
    victim.kill()
    survivor = next(node for node in cluster.nodes if node.process.running)
    connection = await aio_pika.connect(survivor.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("survives", passive=True)
        received = []
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                received.append(message.body.decode())
                if len(received) == 100:
                    break
    assert received == [f"m-{n}" for n in range(100)]
    new_leader, _ = queue_of(cluster, "survives")
    assert new_leader != leader

    await asyncio.to_thread(victim.start)
    await asyncio.to_thread(cluster.wait_for_members, 3)
