"""Test policy for the whole suite.

Fakes only for what lies outside our control; never for RabbitMQ, Redis, the database or Envoy:
those run as real private processes started by the fixtures of `harness.fixtures`, on
free ports, and are ended by the fixture that started them.
"""

from collections.abc import AsyncIterator, Iterator

import pytest

from harness.gateway import LocalGateway
from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis
from harness.shop import Shop
from harness.system import UNREACHED_RATE_LIMITS, UNREACHED_READS_PER_CLIENT, System

pytest_plugins = ["harness.fixtures"]


@pytest.fixture(scope="session")
def system(
    rabbitmq: PrivateRabbitMQ,
    redis_server: PrivateRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """The four services as real processes, registered in the session's Redis, shared by the
    tests that do not stop any of them."""
    running = System(
        tmp_path_factory.mktemp("system"),
        amqp_url=rabbitmq.add_vhost("shared-system"),
        # Limits no test of the shared system reaches (tests/e2e/test_rate_limits.py has its own);
        # a new signing key followed within seconds (tests/e2e/test_key_rotation.py).
        env={
            "REDIS_URL": redis_server.url,
            **UNREACHED_RATE_LIMITS,
            "KEYS_REFRESH_S": "1",
            "SIGNING_KEY_RECHECK_S": "2",
        },
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def gateway(
    system: System, redis_server: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    """Envoy and its agent, and the GraphQL federation gateway behind it, in front of the
    session's system, once every service (and subgraph) is healthy."""
    # Every test's client is 127.0.0.1: per-client read limits are tested in test_rate_limits.
    running = LocalGateway(
        tmp_path_factory.mktemp("gateway"),
        redis_url=redis_server.url,
        secrets=system.gateway_secrets,
        reads_per_client_per_s=UNREACHED_READS_PER_CLIENT,
        graphql=True,
        flags_file=system.flags_file,
    )
    try:
        running.start()
        running.wait_for_healthy()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def shop(system: System) -> AsyncIterator[Shop]:
    client = Shop(system)
    yield client
    await client.close()
