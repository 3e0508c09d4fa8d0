"""`make up`: runs the whole system behind its gateway, until Ctrl-C.

Starts, as processes supervised here (a crashed one is started again, with backoff):
- a private RabbitMQ, unless RABBITMQ_URL points at one (or several: a cluster's nodes joined by
  commas), and a private Redis, unless REDIS_URL does (both under .build/run, gone at the next
  start); `--broker-nodes 3` (`make up BROKER_NODES=3`) starts a cluster of three private nodes
  instead, each queue replicated on all three (harness/rabbitmq.py);
- with `--store postgres` (`make up STORE=postgres`), a private PostgreSQL with a database per
  service, each made with its owner role, which makes its schema, and the runtime role the
  service connects as, which cannot change it nor open another's (harness/postgres.py,
  harness/system.py; their passwords in .build/run/postgres/roles, mode 600); the default is a
  SQLite file per service;
- the local SMTP server and SMS/push receivers (what they get is logged);
- `--instances N` (default 2) of every service, the gateway's auth and rate-limit services
  included, registered in Redis;
- the gateway: Envoy on 127.0.0.1:8080 (GATEWAY_PORT) with its agent process, and the GraphQL
  federation gateway behind its /graphql; every request passes its access filters (tokens,
  revoked sessions, roles; the auth service's check where a contract asks for it) and is
  counted against the rate limits;
- Alertmanager on 127.0.0.1:9093 (ALERTMANAGER_PORT), with monitoring/alertmanager.yml
  (harness/alertmanager.py), and Prometheus on 127.0.0.1:9090 (PROMETHEUS_PORT), scraping every
  instance and Envoy through the targets the registry gives, with the rules of
  monitoring/rules.yml, sending their alerts to that Alertmanager (harness/prometheus.py).
Before any service starts, the admin account (ADMIN_EMAIL, default admin@ordermesh.test) is
created with the operator's command, `python -m services.user create-admin`, with a random
password printed once (there is no default password anywhere; registering through the API
makes customers only); then a demo catalogue is seeded, and curl and grpcurl commands printed,
and the pages to open in a browser (`pages`: the browser tests open each of them).

What other terminals and the tests read (harness/running.py): the addresses in .build/run/env
(`make status`, `make demo`), and the process id of every process it runs in
.build/run/processes, kept current as the supervisor restarts them.

`make rollout [SERVICE=name]` (tools/rollout.py), from another terminal, asks this process for a
rolling restart (SIGUSR1): every instance replaced in turn, none unavailable (harness/rollout.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import grpc
from common.v1 import money_pb2
from inventory.v1 import inventory_service_pb2 as inventory_pb
from inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from ordermesh import telemetry
from user.v1 import user_service_pb2 as user_pb
from user.v1 import user_service_pb2_grpc as user_grpc

from deploy.ca import Issued
from deploy.tls import local_certificate
from harness import PrivateRabbitMQ, PrivateRedis, running
from harness.alertmanager import PrivateAlertmanager
from harness.gateway import LocalGateway
from harness.postgres import PrivatePostgres
from harness.process import ManagedProcess
from harness.prometheus import PAGES, PrivatePrometheus
from harness.rabbitmq import PrivateRabbitMQCluster
from harness.rollout import roll
from harness.running import RUN_DIR
from harness.supervisor import Supervisor
from harness.system import ADMIN_EMAIL, System
from tools import rollout

# How often `make up`'s Prometheus scrapes: the console's live page refreshes as often.
SCRAPE_S = 2.0

CATALOGUE = [
    ("MUG-RED", "Red mug", 1250, 40),
    ("TEAPOT-BLUE", "Blue teapot", 3900, 10),
    ("SPOON-SET", "Set of six spoons", 1800, 25),
    ("KETTLE-STEEL", "Steel kettle", 5900, 3),
]


# The local CA and the gateway's certificate, made once and kept beside the run directory (the
# same as `make compose-env` makes), so that a browser or a tool told to trust the CA trusts
# every later `make up` too.
TLS_DIR = RUN_DIR.parent / "tls"


def gateway_certificate() -> tuple[Issued, Path] | None:
    """The gateway's certificate and the CA that issued it (TLS_DIR), made if missing or about
    to expire; None with GATEWAY_PLAINTEXT=1 (plaintext, as asked)."""
    if os.environ.get("GATEWAY_PLAINTEXT") == "1":
        return None
    local = local_certificate(TLS_DIR)
    return Issued(certificate=local.certificate, key=local.key), local.ca


def seed(gateway: str, admin_email: str, password: str, ca_file: Path | None) -> list[str]:
    """Creates the demo catalogue through the gateway, as the admin; product ids."""
    with (
        grpc.secure_channel(gateway, grpc.ssl_channel_credentials(ca_file.read_bytes()))
        if ca_file
        else grpc.insecure_channel(gateway)
    ) as channel:
        users = user_grpc.UserServiceStub(channel)
        login = users.Login(user_pb.LoginRequest(email=admin_email, password=password), timeout=10)
        admin = [("authorization", f"Bearer {login.tokens.access_token}")]
        inventory = inventory_grpc.InventoryServiceStub(channel)
        return [
            inventory.CreateProduct(
                inventory_pb.CreateProductRequest(
                    sku=sku,
                    name=name,
                    price=money_pb2.Money(amount_minor=price, currency_code="EUR"),
                    initial_stock=stock,
                ),
                metadata=admin,
                timeout=10,
            ).product.product_id
            for sku, name, price, stock in CATALOGUE
        ]


def examples(url: str, address: str, product_id: str, ca_file: Path | None) -> str:
    curl = f"curl -s --cacert {ca_file}" if ca_file else "curl -s"
    trust = (
        f"It answers with a certificate of a local CA made for it ({ca_file}): the commands\n"
        "below trust it (--cacert, -cacert); add it to a browser's or the system's trusted\n"
        "authorities to use others. GATEWAY_PLAINTEXT=1 make up serves plaintext instead.\n"
        if ca_file
        else "It serves plaintext, as asked (GATEWAY_PLAINTEXT=1).\n"
    )
    grpc_tls = f"-cacert {ca_file}" if ca_file else "-plaintext"
    return f"""
The gateway serves REST, gRPC and GraphQL (/graphql) on {url}.
{trust}Try it:

  {curl} {url}/v1/products
  {curl} -X POST {url}/v1/users \\
      -d '{{"email": "ada@example.com", "password": "choose-a-long-one", "displayName": "Ada"}}'
  TOKEN=$({curl} -X POST {url}/v1/auth/login \\
      -d '{{"email": "ada@example.com", "password": "choose-a-long-one"}}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["accessToken"])')
  {curl} -X POST {url}/v1/orders -H "authorization: Bearer $TOKEN" \\
      -d '{{"idempotencyKey": "k-1", "items": [{{"productId": "{product_id}", "quantity": 2}}]}}'
  {curl} {url}/v1/orders -H "authorization: Bearer $TOKEN"
  {curl} {url}/v1/notifications -H "authorization: Bearer $TOKEN"

  Q='{{ me {{ orders {{ state items {{ quantity product {{ name }} }} }} }} }}'
  {curl} {url}/graphql -H "authorization: Bearer $TOKEN" \\
      -H 'content-type: application/json' -d "{{\\"query\\": \\"$Q\\"}}"

  grpcurl {grpc_tls} -import-path proto -import-path .build/protodeps \\
      -proto inventory/v1/inventory_service.proto \\
      {address} inventory.v1.InventoryService/ListProducts

(the gateway does not route server reflection: give grpcurl the contracts, as above)
"""


class Page(NamedTuple):
    """A page of the running system to open in a browser: what it is, and its address."""

    what: str
    url: str


def pages(gateway_url: str, prometheus_url: str, alertmanager_url: str) -> list[Page]:
    """Every page `make up` tells the operator to open, printed by `main` and each opened in
    Chromium by tests/browser/test_make_up_pages.py (add one here, and a check there)."""
    return [
        Page("the shop (register, order, follow your orders)", f"{gateway_url}/"),
        Page("the operator console (sign in as the admin)", f"{gateway_url}/console/"),
        Page("the catalogue, through the gateway (REST)", f"{gateway_url}/v1/products"),
        Page("Prometheus: queries and graphs", f"{prometheus_url}{PAGES['graph']}"),
        Page("Prometheus: alerts (monitoring/rules.yml)", f"{prometheus_url}{PAGES['alerts']}"),
        Page("Prometheus: what it scrapes", f"{prometheus_url}{PAGES['targets']}"),
        # Debian's Alertmanager has no web UI (its Elm sources are not built): its API.
        Page("Alertmanager: the alerts it holds", f"{alertmanager_url}/api/v2/alerts"),
    ]


def printed_pages(listed: Iterable[Page]) -> str:
    return "Open in a browser:\n" + "".join(f"  {page.url}  {page.what}\n" for page in listed)


def processes_of(
    part: PrivateRabbitMQ
    | PrivateRabbitMQCluster
    | PrivateRedis
    | PrivatePostgres
    | PrivateAlertmanager
    | PrivatePrometheus,
) -> list[ManagedProcess]:
    if isinstance(part, PrivateRabbitMQCluster):
        return [node.process for node in part.nodes]
    if isinstance(part, PrivatePrometheus):
        return [part.targets, part.process]
    return [part.process]


def keep_processes_published(
    stop: threading.Event, current: Callable[[], list[ManagedProcess]]
) -> None:
    """Writes the process id of each process `current()` gives (harness/running.py) whenever one
    changes: the supervisor restarts them, a rolling restart replaces them."""
    published: dict[str, int] = {}
    while True:
        pids: dict[str, int] = {}
        for process in current():
            if process.pid is not None and process.running:
                name = process.name if process.name not in pids else f"{process.name}#{process.pid}"
                pids[name] = process.pid
        if pids != published:
            running.publish_processes(pids)
            published = pids
        if stop.wait(0.5):
            return


def rollouts(
    requested: threading.Event,
    stop: threading.Event,
    system: System,
    gateway: LocalGateway,
    supervisor: Supervisor,
) -> None:
    """Runs each rolling restart `make rollout` asks for, writing its progress for it."""
    while not stop.is_set():
        if not requested.wait(0.5):
            continue
        requested.clear()
        services = rollout.REQUEST.read_text().split() if rollout.REQUEST.exists() else []
        with rollout.LOG.open("a") as log:

            def say(line: str) -> None:
                print(line, flush=True)
                log.write(line + "\n")
                log.flush()

            try:
                took = roll(system, gateway, services, supervisor=supervisor, log=say)
                say(f"{rollout.DONE}: {len(took)} instances replaced in {sum(took):.0f} s")
            except Exception as exc:  # noqa: BLE001 - told to the operator, and the system runs on
                say(f"{rollout.FAILED}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Runs the whole system behind its gateway.")
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", "2")))
    parser.add_argument(
        "--broker-nodes", type=int, default=int(os.environ.get("BROKER_NODES", "1"))
    )
    parser.add_argument(
        "--store", choices=["sqlite", "postgres"], default=os.environ.get("STORE") or "sqlite"
    )
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    rollout_requested = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: rollout_requested.set())
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    supervisor = Supervisor()
    started: list[
        PrivateRabbitMQ
        | PrivateRabbitMQCluster
        | PrivateRedis
        | PrivatePostgres
        | System
        | LocalGateway
        | PrivateAlertmanager
        | PrivatePrometheus
    ] = []
    try:
        rabbitmq_url = os.environ.get("RABBITMQ_URL")
        services_env = {}
        if not rabbitmq_url and args.broker_nodes > 1:
            print(f"starting a cluster of {args.broker_nodes} private RabbitMQ nodes "
                  f"(about {10 * args.broker_nodes} s)...", flush=True)  # fmt: skip
            cluster = PrivateRabbitMQCluster(RUN_DIR / "rabbitmq", size=args.broker_nodes)
            started.append(cluster)
            cluster.start()
            for node in cluster.nodes:
                supervisor.watch(node.process)
            rabbitmq_url = ",".join(cluster.urls)
            services_env["RABBITMQ_QUORUM_SIZE"] = str(args.broker_nodes)
        elif not rabbitmq_url:
            print("starting a private RabbitMQ (about 10 s)...", flush=True)
            broker = PrivateRabbitMQ(RUN_DIR / "rabbitmq")
            started.append(broker)
            broker.start()
            supervisor.watch(broker.process)
            rabbitmq_url = broker.url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = PrivateRedis(RUN_DIR / "redis")
            started.append(redis)
            redis.start()
            supervisor.watch(redis.process)
            redis_url = redis.url
        postgres = None
        if args.store == "postgres":
            postgres = PrivatePostgres(RUN_DIR / "postgres")
            started.append(postgres)
            postgres.start()
            supervisor.watch(postgres.process)
        admin_email = os.environ.get("ADMIN_EMAIL", ADMIN_EMAIL)
        tls = gateway_certificate()
        ca_file = tls[1] if tls else None
        # Where the gateway, Prometheus and Alertmanager will answer: the console, started with
        # the services, reaches the system through the first and reads the others.
        gateway_port = int(os.environ.get("GATEWAY_PORT", "8080"))
        gateway_url = f"{'https' if tls else 'http'}://127.0.0.1:{gateway_port}"
        prometheus_port = int(os.environ.get("PROMETHEUS_PORT", "9090"))
        alertmanager_port = int(os.environ.get("ALERTMANAGER_PORT", "9093"))
        print(f"starting {args.instances} instance(s) of each service...", flush=True)
        system = System(
            RUN_DIR / "services",
            amqp_url=rabbitmq_url,
            # The queues' and outboxes' figures sampled as often as this Prometheus scrapes
            # them (the services' default is a deployment's 5 s).
            env={"REDIS_URL": redis_url, "METRICS_INTERVAL_S": f"{SCRAPE_S:g}", **services_env},
            admin_email=admin_email,
            separate_sinks=True,
            postgres=postgres,
            gateway_url=gateway_url,
            gateway_ca=str(ca_file or ""),
            monitoring={
                "PROMETHEUS_URL": f"http://127.0.0.1:{prometheus_port}",
                "ALERTMANAGER_URL": f"http://127.0.0.1:{alertmanager_port}",
                "LOG_DIR": str(RUN_DIR),
            },
        )
        started.append(system)
        system.start()
        instances = [p.process for p in system.processes.values()]
        for n in range(2, args.instances + 1):
            instances += [system.add_instance(s, f"{s}-{n}").process for s in system.services]
        gateway = LocalGateway(
            RUN_DIR / "gateway",
            redis_url=redis_url,
            secrets=system.gateway_secrets,
            port=gateway_port,
            # The services read OTEL_* themselves (they inherit the environment); Envoy is
            # given the same receiver, and samples the new traces as they would.
            otlp_endpoint=urlsplit(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).netloc,
            trace_sampling_percent=100 * telemetry.root_ratio(os.environ),
            graphql=True,
            tls=tls[0] if tls else None,
            flags_file=system.flags_file,  # the gateway's fault switches, as the services'
        )
        started.append(gateway)
        gateway.start()
        gateway.wait_for_healthy(args.instances)
        assert gateway.url == gateway_url, (gateway.url, gateway_url)
        alertmanager = PrivateAlertmanager(RUN_DIR / "alertmanager", port=alertmanager_port)
        started.append(alertmanager)
        alertmanager.start()
        prometheus = PrivatePrometheus(
            RUN_DIR / "prometheus",
            redis_url=redis_url,
            gateway_admin=f"127.0.0.1:{gateway.envoy.admin_port}",
            gateway_agent=f"127.0.0.1:{gateway.agent_port}",
            alertmanager=alertmanager.address,
            scrape_interval_s=SCRAPE_S,
            port=prometheus_port,
        )
        started.append(prometheus)
        prometheus.start()
        for process in [
            *instances,
            gateway.agent,
            gateway.envoy.process,
            *([gateway.graphql.process] if gateway.graphql else []),
            alertmanager.process,
            prometheus.targets,
            prometheus.process,
        ]:
            supervisor.watch(process)
        supervisor.start()
        infrastructure = [part for part in started if not isinstance(part, System | LocalGateway)]

        def current() -> list[ManagedProcess]:
            return [
                *(p.process for p in [*system.processes.values(), *system.added]),
                gateway.agent,
                gateway.envoy.process,
                *([gateway.graphql.process] if gateway.graphql else []),
                *(process for part in infrastructure for process in processes_of(part)),
            ]

        threading.Thread(
            target=keep_processes_published,
            args=(stop, current),
            name="processes",
            daemon=True,
        ).start()
        password = system.admin_password
        products = seed(gateway.address, admin_email, password, ca_file)
        # For `make status` and `make demo`, from another terminal.
        running.publish(
            {
                "RABBITMQ_URL": rabbitmq_url,
                "REDIS_URL": redis_url,
                "GATEWAY_URL": gateway.url,
                **({"GATEWAY_CA": str(ca_file)} if ca_file else {}),
                "PROMETHEUS_URL": prometheus.url,
                "ALERTMANAGER_URL": alertmanager.url,
                "UP_PID": str(os.getpid()),
            }
        )
        threading.Thread(
            target=rollouts,
            args=(rollout_requested, stop, system, gateway, supervisor),
            name="rollouts",
            daemon=True,
        ).start()

        print(f"\nRABBITMQ_URL={rabbitmq_url}\nREDIS_URL={redis_url}")
        print(f"admin: {admin_email} / {password} (printed once; not stored)")
        print(examples(gateway.url, gateway.address, products[0], ca_file))
        print(printed_pages(pages(gateway.url, prometheus.url, alertmanager.url)))
        print(f"Logs: {RUN_DIR} (services/<name>/*.log, gateway/, services/sinks/sinks.log)")
        print(
            "From another terminal: `make demo` (a scenario through REST), `make status`, "
            "`make logs ID=<correlation id>` (one request's lines from every process), "
            "`make rollout` (a rolling restart)."
        )
        print("\nCtrl-C stops what was started here.", flush=True)
        stop.wait()
    finally:
        supervisor.stop()
        for part in reversed(started):
            if isinstance(part, System | LocalGateway | PrivateAlertmanager | PrivatePrometheus):
                part.stop()
            else:
                part.remove()
        print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
