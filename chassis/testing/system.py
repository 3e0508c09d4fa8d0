"""The whole system as real processes: every service started as `python -m services.<name>`.

`ServiceProcess` is one instance on a free port, ready when its gRPC health says SERVING (its
store and broker answer). `System` starts user, inventory, order and notification (and, given
a registry in REDIS_URL, the gateway's auth and rate-limit services) against a given broker,
with the SMTP and HTTP sinks as the notification providers, each service with its SQLite file
in the system's directory; a test owns its system and may kill, restart or stop any of its
processes. Before any service starts, the admin account is created with the
operator's command (`python -m services.user create-admin`), its password in `admin_password`
(its email `admin_email`, ADMIN_EMAIL unless given).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chassis.testing.process import ManagedProcess, accepts, free_port
from chassis.testing.sinks import HttpSink, MailSink

__all__ = [
    "ADMIN_EMAIL",
    "GATEWAY_SERVICES",
    "SERVICES",
    "UNREACHED_RATE_LIMITS",
    "UNREACHED_READS_PER_CLIENT",
    "ServiceProcess",
    "System",
]

SERVICES = ("user", "inventory", "order", "notification")
# The gateway's own services, started when the system has a registry (REDIS_URL): the auth
# service (the ext_authz check, which reads the user service's keys) and the rate-limit service.
GATEWAY_SERVICES = ("auth", "ratelimit")
# Rate limits no load of a test or a benchmark reaches, for systems that measure something else.
UNREACHED_RATE_LIMITS = {
    "RATE_LIMIT_SIGN_IN": "1000000/m",
    "RATE_LIMIT_WRITE_PER_USER": "1000000/m",
    "RATE_LIMIT_WRITE_PER_ADDRESS": "1000000/m",
}
# The gateway's per-client read limit, for the same systems (all their load is one client).
UNREACHED_READS_PER_CLIENT = 1_000_000
ADMIN_EMAIL = "admin@ordermesh.test"


def _serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.RpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


class ServiceProcess:
    def __init__(self, service: str, directory: Path, env: Mapping[str, str], *, instance: str):
        self.service = service
        self.port = free_port()
        self.process = ManagedProcess(
            instance,
            [sys.executable, "-m", f"services.{service}"],
            directory=directory,
            env={**env, "GRPC_PORT": str(self.port), "INSTANCE_ID": instance},
            ready=lambda: _serving(self.port),
            ready_timeout_s=60.0,
            stop_timeout_s=20.0,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
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
    ):
        self.directory = directory
        self.mail = MailSink()
        self.http = HttpSink()
        self._sinks: ManagedProcess | None = None
        if separate_sinks:
            self._sinks = ManagedProcess(
                "sinks",
                [
                    *(sys.executable, "-m", "chassis.testing.sinks"),
                    *("--smtp-port", str(self.mail.port), "--http-port", str(self.http.port)),
                ],
                directory=directory / "sinks",
                ready=lambda: accepts(self.mail.port) and accepts(self.http.port),
                ready_timeout_s=30.0,
            )
        # The first instance of each service, and those added since (stopped with the system).
        self.processes: dict[str, ServiceProcess] = {}
        self.added: list[ServiceProcess] = []
        self.amqp_url = amqp_url
        # Shared by the auth service, which signs the callers it forwards, and the services.
        self.identity_key = secrets.token_urlsafe(32)
        self._env = dict(env or {})
        self.admin_email = admin_email
        self.admin_password = secrets.token_urlsafe(16)
        self.services = SERVICES + (GATEWAY_SERVICES if "REDIS_URL" in self._env else ())

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
                service, self.directory / service, self._env_of(service), instance=f"{service}-1"
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

    def add_instance(self, service: str, name: str, **env: str) -> ServiceProcess:
        """Starts one more instance of `service` (sharing its store)."""
        process = ServiceProcess(
            service, self.directory / service, {**self._env_of(service), **env}, instance=name
        )
        self.added.append(process)
        process.start()
        return process

    def _env_of(self, service: str) -> dict[str, str]:
        """What `service` is started with: only the secrets it uses (the rate-limit service
        has no broker, store or identity key)."""
        backbone = {
            "RABBITMQ_URL": self.amqp_url,
            "STORE_URL": f"sqlite:///{self.directory / service / 'store.sqlite3'}",
            "IDENTITY_KEY": self.identity_key,
        }
        return {
            "LOG_LEVEL": "INFO",
            "HEALTH_INTERVAL_S": "0.5",
            **(backbone if service != "ratelimit" else {}),
            **self._service_env(service),
            **self._env,
        }

    def _service_env(self, service: str) -> dict[str, str]:
        if service == "user":
            return {}
        env = {"USER_SERVICE_ADDR": self.address("user")}
        if service == "order":
            env["INVENTORY_SERVICE_ADDR"] = self.address("inventory")
        if service == "notification":
            env |= {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.mail.port),
                "SMS_PROVIDER_URL": self.http.url("sms"),
                "SMS_PROVIDER_TOKEN": "sms-test-token",
                "PUSH_PROVIDER_URL": self.http.url("push"),
                "PUSH_PROVIDER_TOKEN": "push-test-token",
                "NOTIFICATION_RETRY_DELAYS_S": "[0.2, 0.5, 1.0]",
            }
        return env

    def stop(self) -> None:
        for process in [*reversed(self.added), *reversed(list(self.processes.values()))]:
            process.stop()
        if self._sinks is not None:
            self._sinks.stop()
        else:
            self.http.stop()
            self.mail.stop()
