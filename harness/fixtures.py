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
from typing import Any, TypeVar

import pytest

from harness import figures
from harness.envoy import PrivateEnvoy
from harness.postgres import PrivatePostgres
from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis

Server = TypeVar("Server", PrivateRabbitMQ, PrivateRedis, PrivatePostgres)


def _one(make: Callable[[Path], Server], directory: Path) -> Iterator[Server]:
    server = make(directory)
    server.start()
    yield server
    server.remove()


def _owned(make: Callable[[Path], Server], directory: Path) -> Iterator[Callable[[], Server]]:
    """A factory of servers that belong to the calling test, each removed when it ends."""
    started: list[Server] = []

    def start() -> Server:
        server = make(directory / f"{make.__name__.lower()}-{len(started)}")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """The session's private broker; a test that stops or kills it must use rabbitmq_factory."""
    yield from _one(PrivateRabbitMQ, tmp_path_factory.mktemp("rabbitmq"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """The session's private Redis; a test that stops or kills it must use redis_factory."""
    yield from _one(PrivateRedis, tmp_path_factory.mktemp("redis"))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """The session's private PostgreSQL; a test that stops or kills it must use
    postgres_factory."""
    yield from _one(PrivatePostgres, tmp_path_factory.mktemp("postgres"))


@pytest.fixture
def amqp_url(rabbitmq: PrivateRabbitMQ) -> str:
    """A fresh vhost on the session broker, so exchanges and queues of tests never meet."""
    return rabbitmq.add_vhost(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def postgres_url(postgres: PrivatePostgres) -> str:
    """A fresh database on the session's PostgreSQL."""
    return postgres.database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def rabbitmq_factory(tmp_path: Path) -> Iterator[Callable[[], PrivateRabbitMQ]]:
    """Starts brokers that belong to the calling test (chaos tests kill and restart them)."""
    yield from _owned(PrivateRabbitMQ, tmp_path)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], PrivateRedis]]:
    """Starts Redis servers that belong to the calling test."""
    yield from _owned(PrivateRedis, tmp_path)


@pytest.fixture
def postgres_factory(tmp_path: Path) -> Iterator[Callable[[], PrivatePostgres]]:
    """Starts PostgreSQL servers that belong to the calling test."""
    yield from _owned(PrivatePostgres, tmp_path)


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


@pytest.fixture
def record_figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`record_figure(what, **values)`: a figure this test measured, printed at the end of the
    run and written to the reports (harness.figures)."""
    return lambda what, **values: figures.record(request.node.nodeid, what, **values)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = figures.summary()
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
        written = figures.write()
        terminalreporter.write_line(f"  (written to {written})")
