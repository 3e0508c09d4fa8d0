"""compose.yaml, rendered from a project's catalogue (its gateway: .gateway; its monitoring:
.monitoring; its overrides: .overrides).

    python -m ordermesh.deploy.compose --project MODULE:ATTRIBUTE [--root DIR]
        writes compose.yaml, deploy/compose.host-network.yaml, deploy/compose.mongodb.yaml and
        deploy/postgres/init.sql under DIR (the project's root: the current directory)

compose.yaml is the whole system for Docker Compose (or Podman): RabbitMQ, Redis, PostgreSQL
(a database per service that keeps state, with an owner role and a runtime role each, made or
brought up to date at every `up` by the one-shot `postgres-roles` from deploy/postgres/init.sql,
ordermesh.deploy.databases; then each service's schema made as its owner by the one-shot
`<name>-schema` (the project's schema_module), which the service's containers wait for; the
services connect as their runtime roles, and the superuser's password reaches the server and
`postgres-roles` only), the gateway (Envoy, its bootstrap rendered by
`ordermesh.gateway.envoy` in a one-shot container, its endpoints and edge policy written by its
agent, `ordermesh.gateway.agent`, from the registry and the auth service's policy; HTTPS and gRPC
over TLS with the certificate and key of the compose secrets `gateway-tls-cert` and
`gateway-tls-key`, the files GATEWAY_TLS_CERT and GATEWAY_TLS_KEY name, or plaintext with
GATEWAY_PLAINTEXT=1; the GraphQL federation gateway behind its /graphql, the project's
`Federation`, if it has one), each one-shot `Step` of the project (the example's admin account),
and every service of the catalogue with REPLICAS instances, restart policies, health checks
(`python -m ordermesh.probe`; the agent's: its `/ready`, a verified edge policy and endpoints), a
read-only root filesystem and a rolling-update policy. Every address and port is a variable whose
default suits a normal Docker network (its default from ordermesh.deploy.facts); every secret is a
variable that must be set (the example's `make compose-env` writes them, fresh, to `.env`), handed
only to the processes whose settings take it, as ordermesh.deploy.environment decides for every
target (`ComposeTarget` spells it): the edge policy's signing key to the auth service, its public
half to every follower; the internal hops' secret to Envoy, its agent, the federation gateway and
the services with a GraphQL subgraph or web pages. The clients of the gateway among them (the
console) reach Envoy on this network (GATEWAY_URL) and verify it with the CA of the compose secret
`gateway-ca` (GATEWAY_TLS_CA, by default the local CA's). The monitoring (Prometheus sending its
alerts to Alertmanager, Grafana: the project's `monitoring` directory's files) and the traces
(Jaeger) are under the profiles `monitoring` and `observability`
(ordermesh.deploy.compose.monitoring).
"""

from __future__ import annotations

from typing import Any

from ordermesh.catalogue import Need, Service
from ordermesh.deploy import databases, facts
from ordermesh.deploy.databases import ROLES_COMMAND
from ordermesh.deploy.environment import (
    PROVIDERS,
    environment,
)
from ordermesh.deploy.project import Project

__all__ = [
    "ComposeTarget",
    "app",
    "infrastructure",
    "overridable",
    "published",
    "required",
    "services",
    "steps",
    "store_url",
    "stores_and_schemas",
]

REPLICAS = 2
HEADER = "# Generated from the service catalogue by ordermesh.deploy.compose: do not edit.\n"


def overridable(name: str, default: object) -> str:
    """A value the operator may set in the env file, `default` otherwise."""
    return f"${{{name}:-{default}}}"


# Every address and port, as a variable with a default for a normal Docker network.
RABBITMQ = f"${{RABBITMQ_HOST:-rabbitmq}}:{overridable('RABBITMQ_PORT', facts.AMQP_PORT)}"
REDIS = f"${{REDIS_HOST:-redis}}:{overridable('REDIS_PORT', facts.REDIS_PORT)}"
POSTGRES = f"${{POSTGRES_HOST:-postgres}}:{overridable('POSTGRES_PORT', facts.POSTGRES_PORT)}"
GRPC_PORT = overridable("GRPC_PORT", facts.GRPC_PORT)
METRICS_PORT = overridable("METRICS_PORT", facts.METRICS_PORT)
GRAPHQL_PORT = overridable("GRAPHQL_PORT", facts.GRAPHQL_PORT)
SUBGRAPHS_PORT = overridable("SUBGRAPHS_PORT", facts.SUBGRAPHS_PORT)
# The gateway's agent: `/ready` (its health check) and `/metrics`, never published.
GATEWAY_AGENT_PORT = overridable("GATEWAY_AGENT_PORT", facts.AGENT_PORT)
GATEWAY_PORT = overridable("GATEWAY_PORT", facts.GATEWAY_PORT)
# Where a container reaches Envoy on a normal Docker network (its certificate names `gateway`).
GATEWAY_URL = f"https://${{GATEWAY_HOST:-gateway}}:{GATEWAY_PORT}"
# Where the services send their spans (OTLP/gRPC): nowhere unless the operator sets it, with the
# profile `observability` (its Jaeger: http://jaeger:4317).
OTLP_ENDPOINT = overridable("OTEL_EXPORTER_OTLP_ENDPOINT", "")
POSTGRES_IMAGE = overridable("POSTGRES_IMAGE", facts.POSTGRES_IMAGE)
MONGODB_IMAGE = overridable("MONGODB_IMAGE", facts.MONGODB_IMAGE)
# The gateway's certificate chain and key (PEM), as compose secrets: the files the operator
# names, by default the local CA's that the example's `make compose-env` makes (deploy/tls.py).
# Mounted into Envoy's container only, where the bootstrap names them.
TLS_SECRETS = {
    "gateway-tls-cert": "${GATEWAY_TLS_CERT:-./.build/tls/gateway.crt}",
    "gateway-tls-key": "${GATEWAY_TLS_KEY:-./.build/tls/gateway.key}",
}
# The CA that issued the gateway's certificate (PEM), as a compose secret: the file
# GATEWAY_TLS_CA names, by default the local CA's beside the certificate. Mounted into the
# containers that call the system through the gateway (the console), which verify the gateway
# with it (GATEWAY_CA).
GATEWAY_CA_SECRET = "gateway-ca"
CA_SECRETS = {GATEWAY_CA_SECRET: "${GATEWAY_TLS_CA:-./.build/tls/ca.crt}"}
SECRETS_DIR = "/run/secrets"


def published(variable: str, port: int) -> str:
    """A port published on the host: on its loopback address unless the env file says."""
    return f"{overridable(variable, f'127.0.0.1:{port}')}:{port}"


def required(name: str) -> str:
    return f"${{{name}:?set it in the env file}}"


def app(project: Project, command: list[str], **extra: Any) -> dict[str, Any]:
    """A container of the project's application image (ORDERMESH_IMAGE may name another):
    non-root, read-only, no privileges."""
    return {
        "image": overridable("ORDERMESH_IMAGE", project.local_image()),
        "command": command,
        "read_only": True,
        "tmpfs": ["/tmp", "/run/ordermesh"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        **extra,
    }


def store_url(name: str, role: str) -> str:
    """The URL of database `name` for `role` (its owner's or its runtime role's)."""
    password = required(databases.password_variable(role))
    return f"postgresql://{role}:{password}@{POSTGRES}/{name}"


class ComposeTarget:
    """compose's spelling of each variable (ordermesh.deploy.environment.Target): addresses
    with defaults for a normal Docker network, secrets that the env file must set."""

    def registry(self) -> str:
        return f"redis://:{required('REDIS_PASSWORD')}@{REDIS}/0"

    def broker(self) -> str:
        return f"amqp://ordermesh:{required('RABBITMQ_PASSWORD')}@{RABBITMQ}/"

    def store(self, service: str) -> str:
        return store_url(service, databases.runtime(service))

    def address(self, callee: str, *, variable: str) -> str:
        # Used while the registry does not answer; a service name resolves to its replicas.
        return overridable(variable, f"{callee}:{GRPC_PORT}")

    def secret(self, name: str) -> str:
        return required(name)

    def providers(self) -> dict[str, str]:
        defaults = {"SMTP_HOST": "mail", "SMTP_PORT": 25}
        return {name: overridable(name, defaults.get(name, "")) for name in PROVIDERS}

    def gateway(self) -> dict[str, str]:
        # Envoy's listener on this network (HTTPS by default; GATEWAY_URL=http://... with
        # GATEWAY_PLAINTEXT=1), verified with the CA of the compose secret `gateway-ca`.
        return {
            "GATEWAY_URL": overridable("GATEWAY_URL", GATEWAY_URL),
            "GATEWAY_CA": f"{SECRETS_DIR}/{GATEWAY_CA_SECRET}",
        }

    def monitoring(self) -> dict[str, str]:
        # Prometheus and Alertmanager run under the profile `monitoring`, Jaeger under
        # `observability` (ordermesh.deploy.compose.monitoring). JAEGER_URL is where a browser
        # opens a trace (the published UI): none unless the operator sets it with that profile.
        return {
            "PROMETHEUS_URL": overridable(
                "PROMETHEUS_URL", f"http://prometheus:{facts.PROMETHEUS_PORT}"
            ),
            "ALERTMANAGER_URL": overridable(
                "ALERTMANAGER_URL", f"http://alertmanager:{facts.ALERTMANAGER_PORT}"
            ),
            "JAEGER_URL": overridable("JAEGER_URL", ""),
        }

    def value(self, text: str) -> str:
        return text.replace("$", "$$")  # never interpolated


TARGET = ComposeTarget()


def _service_environment(
    project: Project, service: Service, *, serving: bool = True
) -> dict[str, str]:
    """What a process of `service` is started with: how it listens here, then what
    ordermesh.deploy.environment decides (`serving=False`: a one-shot step of it)."""
    listening = {
        "LOG_LEVEL": "${LOG_LEVEL:-INFO}",
        "GRPC_HOST": "${GRPC_HOST:-0.0.0.0}",
        "GRPC_PORT": GRPC_PORT,
        "METRICS_PORT": METRICS_PORT,
        "PORT_FILE": "/run/ordermesh/grpc.port",
        "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_ENDPOINT,
    }
    decided = environment(
        project.catalogue, service, TARGET, serving=serving, catalogue_at=project.catalogue_at
    )
    return listening | decided


def infrastructure() -> dict[str, Any]:
    return {
        "rabbitmq": {
            "image": overridable("RABBITMQ_IMAGE", facts.RABBITMQ_IMAGE),
            "hostname": "rabbitmq",
            "environment": {
                "RABBITMQ_DEFAULT_USER": "ordermesh",
                "RABBITMQ_DEFAULT_PASS": required("RABBITMQ_PASSWORD"),
                "RABBITMQ_NODE_IP_ADDRESS": "${RABBITMQ_LISTEN:-0.0.0.0}",
                "RABBITMQ_NODE_PORT": overridable("RABBITMQ_PORT", facts.AMQP_PORT),
                "RABBITMQ_DIST_PORT": overridable("RABBITMQ_DIST_PORT", facts.DIST_PORT),
                "ERL_EPMD_PORT": overridable("RABBITMQ_EPMD_PORT", facts.EPMD_PORT),
                "RABBITMQ_NODENAME": "${RABBITMQ_NODENAME:-rabbit@rabbitmq}",
            },
            "volumes": ["rabbitmq:/var/lib/rabbitmq"],
            "restart": "unless-stopped",
            "healthcheck": {
                "test": ["CMD", "rabbitmq-diagnostics", "-q", "check_port_connectivity"],
                "interval": "10s",
                "timeout": "10s",
                "retries": 5,
                "start_period": "30s",
            },
        },
        "redis": {
            "image": overridable("REDIS_IMAGE", facts.REDIS_IMAGE),
            # The password reaches Redis in a file only its user reads, never on a command line
            # that any local user could read.
            "command": [
                "sh",
                "-c",
                'umask 077 && printf "requirepass %s\\n" "$$REDIS_PASSWORD" > /tmp/redis.conf '
                '&& exec redis-server /tmp/redis.conf --bind "$$REDIS_LISTEN" '
                '--port "$$REDIS_PORT" --save "" --appendonly no',
            ],
            "environment": {
                "REDIS_PASSWORD": required("REDIS_PASSWORD"),
                "REDIS_LISTEN": "${REDIS_LISTEN:-0.0.0.0}",
                "REDIS_PORT": overridable("REDIS_PORT", facts.REDIS_PORT),
            },
            "restart": "unless-stopped",
            "healthcheck": {
                "test": [
                    "CMD-SHELL",
                    'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli -p "$$REDIS_PORT" ping | grep PONG',
                ],
                "interval": "5s",
                "timeout": "3s",
                "retries": 5,
            },
        },
        "postgres": {
            "image": POSTGRES_IMAGE,
            "command": ["postgres", "-c", "listen_addresses=${POSTGRES_LISTEN:-*}"],
            "environment": {
                "POSTGRES_USER": "ordermesh",
                "POSTGRES_PASSWORD": required("POSTGRES_PASSWORD"),
                "PGPORT": overridable("POSTGRES_PORT", facts.POSTGRES_PORT),
            },
            "volumes": ["postgres:/var/lib/postgresql/data"],
            "restart": "unless-stopped",
            "healthcheck": {
                "test": ["CMD-SHELL", 'pg_isready -U ordermesh -p "$$PGPORT"'],
                "interval": "5s",
                "timeout": "3s",
                "retries": 10,
            },
        },
    }


def stores_and_schemas(project: Project) -> dict[str, Any]:
    """The databases' roles, made or brought up to date at every `up` (`postgres-roles`, the
    only container besides the server given the superuser's password), then each service's
    schema, made as its database's owner (`<name>-schema`, given that role's password only)."""
    roles = [role for name in project.stores() for role in databases.roles(name)]
    rendered: dict[str, Any] = {
        "postgres-roles": {
            "image": POSTGRES_IMAGE,
            "command": ["sh", "-c", ROLES_COMMAND],
            "environment": {
                "PGHOST": "${POSTGRES_HOST:-postgres}",
                "PGPORT": overridable("POSTGRES_PORT", facts.POSTGRES_PORT),
                "PGUSER": "ordermesh",
                "PGDATABASE": "postgres",
                "PGPASSWORD": required("POSTGRES_PASSWORD"),
                **{
                    databases.password_variable(role): required(databases.password_variable(role))
                    for role in roles
                },
            },
            "volumes": ["./deploy/postgres/init.sql:/ordermesh/init.sql:ro"],
            "read_only": True,
            "tmpfs": ["/tmp"],
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
            "depends_on": ["postgres"],
        }
    }
    for name in project.stores():
        rendered[f"{name}-schema"] = app(
            project,
            project.schema_command(name),
            environment={"STORE_URL": store_url(name, databases.owner(name))},
            depends_on={"postgres-roles": {"condition": "service_completed_successfully"}},
        )
    return rendered


def _started(*names: str) -> dict[str, Any]:
    return {name: {"condition": "service_started"} for name in names}


def _schema_made(name: str) -> dict[str, Any]:
    return {f"{name}-schema": {"condition": "service_completed_successfully"}}


def _infrastructure_of(service: Service) -> dict[str, Any]:
    """What a process of `service` waits for: the registry, and the broker and its store's
    schema for a service that keeps state."""
    if Need.STORE not in service.needs:
        return _started("redis")
    return _started("redis", "rabbitmq", "postgres") | _schema_made(service.name)


def steps(project: Project) -> dict[str, Any]:
    """The project's one-shot steps (ordermesh.deploy.project.Step): each started with its
    service's settings and its own, restarted until it succeeds (nothing here waits for
    health checks), before its service."""
    rendered = {}
    for step in project.steps:
        service = project.catalogue.entry(step.service)
        rendered[step.name] = app(
            project,
            ["sh", "-c", step.command.replace("$", "$$")],
            environment={
                **_service_environment(project, service, serving=False),
                **{name: overridable(name, value) for name, value in step.settings.items()},
                **{name: required(name) for name in step.secrets},
            },
            restart="on-failure",
            depends_on=_infrastructure_of(service),
        )
    return rendered


def services(project: Project) -> dict[str, Any]:
    rendered = {}
    for service in project.catalogue.in_start_order():
        depends = _infrastructure_of(service)
        depends |= _started(*project.catalogue.dependencies(service))
        depends |= _started(*(step.name for step in project.steps_of(service)))
        # A client of the gateway verifies it with its certificate's CA (GATEWAY_CA); it
        # needs the gateway only once called (it starts without it).
        extra = {"secrets": [GATEWAY_CA_SECRET]} if service.calls_gateway else {}
        rendered[service.name] = app(
            project,
            list(service.command),
            environment=_service_environment(project, service),
            **extra,
            restart="unless-stopped",
            depends_on=depends,
            healthcheck={
                "test": ["CMD", "python", "-m", "ordermesh.probe"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 3,
                "start_period": "20s",
            },
            # SIGTERM drains (out of the registry, in-flight calls finish) within the grace.
            stop_grace_period=f"{facts.TERMINATION_GRACE_S}s",
            deploy={
                "replicas": REPLICAS,
                "update_config": {
                    "parallelism": 1,
                    "order": "start-first",
                    "delay": "5s",
                    "failure_action": "rollback",
                    "monitor": "20s",
                },
                "rollback_config": {"parallelism": 1, "order": "start-first"},
                "restart_policy": {"condition": "any", "delay": "2s"},
            },
        )
    return rendered
