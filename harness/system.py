"""The whole system as real processes: every service started as `python -m services.<name>`.

`ServiceProcess` is one instance on a free port, ready when its gRPC health says SERVING (its
store and broker answer). `System` starts the services of the catalogue (`services.catalogue`)
in their start order: the domain services and, given a registry in REDIS_URL, the gateway's
own (auth, rate limit), against a given broker, each with what its entry says it needs (a
SQLite file in the system's directory or a database on a given PostgreSQL as its store, the
addresses of the services it calls: ordermesh.deploy.environment decides them, `LocalTarget` spells
them) and with the SMTP and HTTP sinks as the notification providers; a test owns its system and
may kill, restart or stop any of its processes. Before any service starts, the admin account
is created with the operator's command (`python -m services.user create-admin`), its password
in `admin_password` (its email `admin_email`, ADMIN_EMAIL unless given).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ordermesh.deploy.environment import (
    INTERNAL_TOKEN,
    POLICY_SIGNING_KEY,
    POLICY_VERIFY_KEY,
    REGISTRY,
    environment,
    gateway_secrets,
)
from ordermesh.policy import new_policy_keys

from deploy.ca import LocalCA
from deploy.project import PROJECT
from harness.postgres import PrivatePostgres
from harness.process import ManagedProcess, NotReady, accepts, free_port
from harness.sinks import HttpSink, MailSink
from services import catalogue
from services.schema import create_schema

__all__ = [
    "ADMIN_EMAIL",
    "UNREACHED_RATE_LIMITS",
    "UNREACHED_READS_PER_CLIENT",
    "ServiceProcess",
    "System",
]

# Rate limits no load of a test or a benchmark reaches, for systems that measure something else.
UNREACHED_RATE_LIMITS = {
    "RATE_LIMIT_SIGN_IN": "1000000/m",
    "RATE_LIMIT_WRITE_PER_USER": "1000000/m",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "1000000/m",
}
# The gateway's per-client read limit, for the same systems (all their load is one client).
UNREACHED_READS_PER_CLIENT = 1_000_000
ADMIN_EMAIL = "admin@ordermesh.test"


def _serving(port: int, *, service: str, tls: LocalCA | None) -> bool:
    address = f"127.0.0.1:{port}"
    try:
        with (
            tls.channel(address, service=service) if tls else grpc.insecure_channel(address)
        ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.RpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


class ServiceProcess:
    def __init__(
        self,
        service: str,
        directory: Path,
        env: Mapping[str, str],
        *,
        instance: str,
        tls: LocalCA | None = None,
    ):
        """`tls`: the CA of a system whose services speak mutual TLS (`System(tls=True)`)."""
        self.service = service
        self._made = (instance, directory, env, tls)
        self.process = self._on(free_port())

    def _on(self, port: int) -> ManagedProcess:
        instance, directory, env, tls = self._made
        self.port = port
        return ManagedProcess(
            instance,
            [sys.executable, "-m", catalogue.CATALOGUE.entry(self.service).module],
            directory=directory,
            env={**env, "GRPC_PORT": str(port), "INSTANCE_ID": instance},
            ready=lambda: _serving(port, service=self.service, tls=tls),
            ready_timeout_s=60.0,
            stop_timeout_s=20.0,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts it; on a port of its own again if the one chosen was taken before it bound
        it (free_port's ports are the kernel's ephemeral ones: any process's outgoing
        connection may get one meanwhile; seen once as `make up` started, "Failed to bind to
        address 127.0.0.1:33075")."""
        try:
            self.process.start()
        except NotReady as exc:
            if "Failed to bind" not in str(exc):
                raise
            self.process = self._on(free_port())
            self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


class System:
    """The services, and the providers they notify through: in this process (`mail`, `http`,
    which tests read), or with `separate_sinks` in a process of their own (benchmarks, where
    their work must not share this process's interpreter with the load it measures)."""

    def __init__(
        self,
        directory: Path,
        *,
        amqp_url: str,
        env: Mapping[str, str] | None = None,
        admin_email: str = ADMIN_EMAIL,
        separate_sinks: bool = False,
        postgres: PrivatePostgres | None = None,
        tls: bool = False,
        gateway_url: str = "",
        gateway_ca: str = "",
        monitoring: Mapping[str, str] | None = None,
    ):
        """`postgres`: the services' stores are databases there (one per service), instead of
        a SQLite file each in `directory`. `tls`: the services' gRPC is mutual TLS, each with a
        certificate of a CA made for this system (`self.tls`, which gives tests theirs).
        `gateway_url` (and `gateway_ca`, the CA of its certificate): where the gateway in front
        of this system will answer; the services that reach the system through it (the
        console) run only with one. `monitoring`: what runs of
        ordermesh.deploy.environment.MONITORING (PROMETHEUS_URL...), for the services that read
        it."""
        self.directory = directory
        self.tls = LocalCA(directory / "tls") if tls else None
        self.postgres = postgres
        self.mail = MailSink()
        self.http = HttpSink()
        self._sinks: ManagedProcess | None = None
        if separate_sinks:
            self._sinks = ManagedProcess(
                "sinks",
                [
                    *(sys.executable, "-m", "harness.sinks"),
                    *("--smtp-port", str(self.mail.port), "--http-port", str(self.http.port)),
                ],
                directory=directory / "sinks",
                # The harness is tooling, not part of the installed package: run it from here.
                env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                ready=lambda: accepts(self.mail.port) and accepts(self.http.port),
                ready_timeout_s=30.0,
            )
        # The first instance of each service, and those added since (stopped with the system).
        self.processes: dict[str, ServiceProcess] = {}
        self.added: list[ServiceProcess] = []
        self._replacements = 0
        self.amqp_url = amqp_url
        # What every service is also given (REDIS_URL, limits...), over what is decided here.
        self._env = dict(env or {})
        self.admin_email = admin_email
        self.admin_password = secrets.token_urlsafe(16)
        # The edge policy's keys (ordermesh.policy): the auth service signs with the first, the
        # gateways and the services verify with the second; the secret of the internal hops
        # (ordermesh.gateway.envoy): the gateways and the services' subgraphs.
        self.policy_signing_key, self.policy_verify_key = new_policy_keys()
        self.internal_token = secrets.token_urlsafe(32)
        # The fault switches' file (ordermesh.switches): none is on until a test or an operator
        # turns one on there.
        self.flags_file = directory / "flags.json"
        self.gateway_url = gateway_url
        self.gateway_ca = gateway_ca
        self.monitoring = dict(monitoring or {})
        # The gateway's own services need the registry, to find the services they call.
        wanted = (
            catalogue.CATALOGUE if REGISTRY in self._env else catalogue.CATALOGUE.domain_services()
        )
        self.services = [
            service.name
            for service in catalogue.CATALOGUE.in_start_order(wanted)
            if gateway_url or not service.calls_gateway
        ]

    def address(self, service: str) -> str:
        return self.processes[service].address

    def start(self) -> None:
        if self._sinks is not None:
            self._sinks.start()
        else:
            self.mail.start()
            self.http.start()
        self._create_admin()
        for service in self.services:
            process = ServiceProcess(
                service,
                self.directory / service,
                self._env_of(service),
                instance=f"{service}-1",
                tls=self.tls,
            )
            self.processes[service] = process
            process.start()

    def _create_admin(self) -> None:
        """The admin, made as an operator would, before the user service (or a route) opens."""
        subprocess.run(
            [sys.executable, "-m", "services.user", "create-admin", "--email", self.admin_email,
             "--password-stdin"],
            input=self.admin_password + "\n",
            env={**os.environ, **self._env_of("user"), "INSTANCE_ID": "user-create-admin"},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )  # fmt: skip

    def instances(self, service: str) -> list[ServiceProcess]:
        """Every instance of `service` that this system runs."""
        return [p for p in [*self.processes.values(), *self.added] if p.service == service]

    def replace(self, old: ServiceProcess) -> ServiceProcess:
        """Starts a new instance of `old`'s service (ready: SERVING) to take its place; the
        caller stops `old` once the new one takes traffic (`harness.rollout`)."""
        self._replacements += 1
        new = ServiceProcess(
            old.service,
            self.directory / old.service,
            self._env_of(old.service),
            instance=f"{old.service}-r{self._replacements}",
            tls=self.tls,
        )
        new.start()
        if self.processes.get(old.service) is old:
            self.processes[old.service] = new
        else:
            self.added[self.added.index(old)] = new
        return new

    def add_instance(self, service: str, name: str, **env: str) -> ServiceProcess:
        """Starts one more instance of `service` (sharing its store)."""
        process = ServiceProcess(
            service,
            self.directory / service,
            {**self._env_of(service), **env},
            instance=name,
            tls=self.tls,
        )
        self.added.append(process)
        process.start()
        return process

    @property
    def gateway_secrets(self) -> dict[str, str]:
        """What a gateway of this system is given (`LocalGateway(secrets=...)`)."""
        return gateway_secrets(LocalTarget(self))

    def store_url(self, name: str) -> str:
        """The store of service `name` (its instances share it). On PostgreSQL: its database,
        its schema made by the database's owner (the schema step compose and Kubernetes run,
        `services.schema`), and the URL of its runtime role, which cannot change that schema
        nor open another service's database."""
        if self.postgres is None:
            return f"sqlite:///{self.directory / name / 'store.sqlite3'}"
        owner = self.postgres.database(name)
        # In a thread of its own: the caller may be running an event loop (an async test).
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, create_schema(name, owner, wait_s=0)).result()
        return self.postgres.runtime_url(name)

    def _env_of(self, name: str) -> dict[str, str]:
        """What service `name` is started with: what ordermesh.deploy.environment decides from its
        catalogue entry (only the secrets it uses: the rate-limit service has no broker or
        store), how it runs here, and what the system was given (`env`)."""
        here = {"LOG_LEVEL": "INFO", "HEALTH_INTERVAL_S": "0.5"}
        service = catalogue.CATALOGUE.entry(name)
        decided = environment(
            catalogue.CATALOGUE, service, LocalTarget(self), catalogue_at=PROJECT.catalogue_at
        )
        env = here | decided
        if service.notifies:  # the tests' retries, short
            env["NOTIFICATION_RETRY_DELAYS_S"] = "[0.2, 0.5, 1.0]"
        if self.tls is not None:
            env |= self.tls.settings(name)
        # The fault switches of every process of this system (python -m ordermesh.switches).
        env["FAULT_FLAGS_FILE"] = str(self.flags_file)
        return env | self._env

    def stop(self) -> None:
        ManagedProcess.stop_all(
            process.process
            for process in [*reversed(self.added), *reversed(list(self.processes.values()))]
        )
        if self._sinks is not None:
            self._sinks.stop()
        else:
            self.http.stop()
            self.mail.stop()


class LocalTarget:
    """The local processes' spelling of each variable (ordermesh.deploy.environment.Target): real
    addresses and ports, this system's secrets, its sinks as the notification providers."""

    def __init__(self, system: System):
        self.system = system

    def registry(self) -> str | None:
        # Given with the system's `env` (REDIS_URL), or none: the tests without a registry.
        return self.system._env.get(REGISTRY)

    def broker(self) -> str:
        return self.system.amqp_url

    def store(self, service: str) -> str:
        return self.system.store_url(service)

    def address(self, callee: str, *, variable: str) -> str:
        return self.system.address(callee)

    def secret(self, name: str) -> str:
        return {
            POLICY_VERIFY_KEY: self.system.policy_verify_key,
            POLICY_SIGNING_KEY: self.system.policy_signing_key,
            INTERNAL_TOKEN: self.system.internal_token,
        }[name]

    def gateway(self) -> dict[str, str]:
        ca = {"GATEWAY_CA": self.system.gateway_ca} if self.system.gateway_ca else {}
        return {"GATEWAY_URL": self.system.gateway_url, **ca}

    def monitoring(self) -> dict[str, str]:
        return self.system.monitoring

    def value(self, text: str) -> str:
        return text

    def providers(self) -> dict[str, str]:
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.system.mail.port),
            "SMS_PROVIDER_URL": self.system.http.url("sms"),
            "SMS_PROVIDER_TOKEN": "sms-test-token",
            "PUSH_PROVIDER_URL": self.system.http.url("push"),
            "PUSH_PROVIDER_TOKEN": "push-test-token",
        }
