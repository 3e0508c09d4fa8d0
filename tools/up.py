"""`make up`: runs what of the system exists so far, until Ctrl-C.

Today that is the infrastructure: a private RabbitMQ and a private Redis (unless RABBITMQ_URL /
REDIS_URL point at running ones), with their data under .build/run. The services, the Envoy
gateway and the supervised instances are not built yet; this says so instead of pretending.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from chassis.testing import PrivateRabbitMQ, PrivateRedis

RUN_DIR = Path(__file__).resolve().parent.parent / ".build" / "run"
NOT_BUILT = [
    "the user, inventory, order and notification services and the order saga",
    "the Envoy gateway on 127.0.0.1:8080 (REST and gRPC), auth and rate limiting",
    "the registry and the supervised service instances (--instances N)",
]


def main() -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    started: list[PrivateRabbitMQ | PrivateRedis] = []
    try:
        rabbitmq_url = os.environ.get("RABBITMQ_URL")
        if not rabbitmq_url:
            print("starting a private RabbitMQ (about 6 s)...", flush=True)
            broker = PrivateRabbitMQ(RUN_DIR / "rabbitmq")
            started.append(broker)
            broker.start()
            rabbitmq_url = broker.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = PrivateRedis(RUN_DIR / "redis")
            started.append(redis)
            redis.start()
            redis_url = redis.url
        print(f"\nRABBITMQ_URL={rabbitmq_url}\nREDIS_URL={redis_url}\n")
        print("Not built yet, so not started:")
        for part in NOT_BUILT:
            print(f"  - {part}")
        print("\nCtrl-C stops what was started here.", flush=True)
        stop.wait()
    finally:
        for process in reversed(started):
            process.remove()
        print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
