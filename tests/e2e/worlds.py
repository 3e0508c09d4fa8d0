"""Systems of their own for test modules that break things (kill, stop Redis, hit limits)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis
from harness.system import System


@contextmanager
def own_system(
    rabbitmq: PrivateRabbitMQ, directory: Path, **env: str
) -> Iterator[tuple[PrivateRedis, System]]:
    """A system a test module may break: its own Redis (registry and counters) and services
    (on a vhost of the session's broker), started here and removed at the end."""
    redis = PrivateRedis(directory / "redis")
    redis.start()
    system = System(
        directory / "system",
        amqp_url=rabbitmq.add_vhost(directory.name),
        env={"REDIS_URL": redis.url, **env},
    )
    try:
        system.start()
        yield redis, system
    finally:
        system.stop()
        redis.remove()
