"""RABBITMQ_URL names one node or a cluster's nodes; the connection tries them in turn."""

import asyncio

import pytest
from ordermesh.broker import ClusterConnection, nodes_of
from yarl import URL


def test_one_url_or_several_joined_by_commas():
    nodes = [URL(f"amqp://u:p@127.0.0.1:{port}/shop") for port in (5701, 5702)]
    assert nodes_of("amqp://u:p@127.0.0.1:5701/shop") == nodes[:1]
    assert nodes_of(" amqp://u:p@127.0.0.1:5701/shop , amqp://u:p@127.0.0.1:5702/shop,") == nodes


@pytest.mark.parametrize("url", ["http://u:secret@127.0.0.1:5672/", "amqp://u:secret@/"])
def test_what_is_not_an_amqp_url_is_refused_without_its_password(url):
    with pytest.raises(ValueError, match="not an AMQP URL") as refused:
        nodes_of(f"amqp://u:p@127.0.0.1:5701/,{url}")
    assert "secret" not in str(refused.value)


def test_no_url_is_refused():
    with pytest.raises(ValueError, match="no RabbitMQ URL"):
        nodes_of(" , ")


async def test_each_attempt_to_connect_goes_to_the_next_node():
    """Three listeners that hang up at once: each attempt fails, and the next goes elsewhere."""
    contacted: list[int] = []
    fourth = asyncio.Event()

    async def listener() -> asyncio.Server:
        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            contacted.append(writer.get_extra_info("sockname")[1])
            writer.close()
            if len(contacted) == 4:
                fourth.set()

        return await asyncio.start_server(hang_up, "127.0.0.1", 0)

    servers = [await listener() for _ in range(3)]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    nodes = [URL(f"amqp://u:p@127.0.0.1:{port}/") for port in ports]
    connection = ClusterConnection(nodes, first=1, fail_fast=False, reconnect_interval=0.05)
    connecting = asyncio.create_task(connection.connect(timeout=1))
    try:
        await asyncio.wait_for(fourth.wait(), timeout=10)
    finally:
        connecting.cancel()
        await connection.close()
        for server in servers:
            server.close()
    assert contacted[:4] == [ports[1], ports[2], ports[0], ports[1]]
