"""Test policy for the whole suite.

Fakes only for what lies outside our control; never for RabbitMQ, Redis, the database or Envoy:
those run as real private processes started by the fixtures of `chassis.testing.fixtures`, on
free ports, and are ended by the fixture that started them.
"""

from collections.abc import AsyncIterator, Iterator

import pytest

from chassis.testing.rabbitmq import PrivateRabbitMQ
from chassis.testing.system import System
from tests.integration.shop import Shop

pytest_plugins = ["chassis.testing.fixtures"]


@pytest.fixture(scope="session")
def system(rabbitmq: PrivateRabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The four services as real processes, shared by the tests that do not stop any of them."""
    running = System(
        tmp_path_factory.mktemp("system"), amqp_url=rabbitmq.add_vhost("shared-system")
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def shop(system: System) -> AsyncIterator[Shop]:
    client = Shop(system)
    yield client
    await client.close()
