"""pytest fixtures over the private processes.

Load them with `pytest_plugins = ["harness.fixtures"]`.

Session-wide: one RabbitMQ node, one Redis server and one PostgreSQL server, shared by the tests
that only use them (each test its own vhost or database). Per test: factories for brokers,
Redis and PostgreSQL servers and Envoys that the test owns and may stop, kill and restart;
each is ended when the test ends, whatever happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.envoy import PrivateEnvoy
from harness.postgres import PrivatePostgres
from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """The session's private broker; a test that stops or kills it must use rabbitmq_factory."""
    broker = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    yield broker
    broker.remove()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """The session's private Redis; a test that stops or kills it must use redis_factory."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """The session's private PostgreSQL; a test that stops or kills it must use
    postgres_factory."""
    server = PrivatePostgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres: PrivatePostgres) -> str:
    """A fresh database on the session's PostgreSQL."""
    return postgres.database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def postgres_factory(tmp_path: Path) -> Iterator[Callable[[], PrivatePostgres]]:
    """Starts PostgreSQL servers that belong to the calling test."""
    started: list[PrivatePostgres] = []

    def start() -> PrivatePostgres:
        server = PrivatePostgres(tmp_path / f"postgres-{len(started)}")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture
def amqp_url(rabbitmq: PrivateRabbitMQ) -> str:
    """A fresh vhost on the session broker, so exchanges and queues of tests never meet."""
    return rabbitmq.add_vhost(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def rabbitmq_factory(tmp_path: Path) -> Iterator[Callable[[], PrivateRabbitMQ]]:
    """Starts brokers that belong to the calling test (chaos tests kill and restart them)."""
    started: list[PrivateRabbitMQ] = []

    def start() -> PrivateRabbitMQ:
        broker = PrivateRabbitMQ(tmp_path / f"rabbitmq-{len(started)}")
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.remove()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], PrivateRedis]]:
    """Starts Redis servers that belong to the calling test."""
    started: list[PrivateRedis] = []

    def start() -> PrivateRedis:
        server = PrivateRedis(tmp_path / f"redis-{len(started)}")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], PrivateEnvoy]]:
    """Starts Envoys with a given bootstrap config; they belong to the calling test."""
    started: list[PrivateEnvoy] = []

    def start(config: dict[str, Any]) -> PrivateEnvoy:
        proxy = PrivateEnvoy(tmp_path / f"envoy-{len(started)}", config)
        started.append(proxy)
        proxy.start()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
