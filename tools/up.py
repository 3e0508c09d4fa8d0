"""`make up`: runs what of the system exists so far, until Ctrl-C.

Today that is: a private RabbitMQ (unless RABBITMQ_URL points at a running one) and a private
Redis (unless REDIS_URL does), the four services (one instance each, over gRPC, their SQLite
stores under .build/run), a local SMTP server and SMS/push receivers that log what they get.
The Envoy gateway, the registry and the supervised N instances are not built yet (issue 5);
this says so instead of pretending.

ADMIN_EMAIL names the account that gets the admin role (default admin@ordermesh.test); there
is no admin password anywhere: register that account with a password of your own.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from chassis.testing import PrivateRabbitMQ, PrivateRedis
from chassis.testing.system import ADMIN_EMAIL, System

RUN_DIR = Path(__file__).resolve().parent.parent / ".build" / "run"
NOT_BUILT = [
    "the Envoy gateway on 127.0.0.1:8080 (REST and gRPC), auth and rate limiting",
    "the registry and the supervised service instances (--instances N)",
]


def examples(system: System, admin_email: str) -> str:
    user, inventory, order = (system.address(s) for s in ("user", "inventory", "order"))
    return f"""
Try it with grpcurl (every service lists its API through reflection):

  grpcurl -plaintext {user} list
  grpcurl -plaintext -d '{{"email": "{admin_email}", "password": "choose-a-long-one"}}' \\
      {user} user.v1.UserService/Register
  TOKEN=$(grpcurl -plaintext -d '{{"email": "{admin_email}", "password": "choose-a-long-one"}}' \\
      {user} user.v1.UserService/Login \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])')
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"sku": "MUG-RED", "name": "Red mug",
      "price": {{"amount_minor": 1250, "currency_code": "EUR"}}, "initial_stock": 10}}' \\
      {inventory} inventory.v1.InventoryService/CreateProduct
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"idempotency_key": "k-1",
      "items": [{{"product_id": "<product id>", "quantity": 2}}]}}' \\
      {order} order.v1.OrderService/PlaceOrder

Emails, SMS and push notifications are logged in {system.directory / "sinks" / "sinks.log"}.
"""


def main() -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    started: list[PrivateRabbitMQ | PrivateRedis | System] = []
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
        admin_email = os.environ.get("ADMIN_EMAIL", ADMIN_EMAIL)
        print("starting the services...", flush=True)
        system = System(
            RUN_DIR / "services",
            amqp_url=rabbitmq_url,
            env={"ADMIN_EMAIL": admin_email},
            separate_sinks=True,
        )
        started.append(system)
        system.start()
        print(f"\nRABBITMQ_URL={rabbitmq_url}\nREDIS_URL={redis_url}")
        for service, process in system.processes.items():
            print(f"{service:<13} gRPC on {process.address}")
        print(examples(system, admin_email))
        print("Not built yet, so not started:")
        for part in NOT_BUILT:
            print(f"  - {part}")
        print("\nCtrl-C stops what was started here.", flush=True)
        stop.wait()
    finally:
        for process in reversed(started):
            if isinstance(process, System):
                process.stop()
            else:
                process.remove()
        print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
