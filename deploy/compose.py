"""compose.yaml and its override files, rendered from the service catalogue (`make gen`).

    python -m deploy.compose            writes compose.yaml, deploy/compose.host-network.yaml,
                                        deploy/compose.mongodb.yaml, deploy/postgres/init.sql

compose.yaml is the whole system for Docker Compose (or Podman): RabbitMQ, Redis, PostgreSQL
(a database per service that keeps state, with an owner role and a runtime role each, made or
brought up to date at every `up` by the one-shot `postgres-roles` from deploy/postgres/init.sql,
deploy/databases.py; then each service's schema made as its owner by the one-shot
`<name>-schema`, which the service's containers wait for; the services connect as their
runtime roles, and the superuser's password reaches the server and `postgres-roles` only), the
gateway (Envoy, its bootstrap rendered by
`gateway.envoy` in a one-shot container, its endpoints and edge policy written by its agent,
`gateway.agent`, from the registry and the auth service's policy; HTTPS and gRPC over TLS
with the certificate and key of the compose secrets `gateway-tls-cert` and `gateway-tls-key`,
the files GATEWAY_TLS_CERT and GATEWAY_TLS_KEY name, or plaintext with GATEWAY_PLAINTEXT=1; the
GraphQL federation gateway behind its /graphql, our image of Hive Gateway with the packages of
gateway/graphql, deploy/images.py), and every service of the
catalogue with REPLICAS instances, restart policies, health checks (`python -m chassis.probe`;
the agent's: its `/ready`, a verified edge policy and endpoints), a read-only root filesystem
and a rolling-update policy. Every address and port is a variable whose default suits a normal
Docker network; every secret is a variable that must be set (`make compose-env` writes them,
fresh, to `.env`), handed only to the processes whose settings take it: the edge policy's
signing key to the auth service, its public half to every follower (`_policy_environment`);
the internal hops' secret to Envoy, its agent, the federation gateway and the services with a
GraphQL subgraph (`_internal_environment`).

- compose.host-network.yaml: every container on the host's network, bound to 127.0.0.1, on the
  ports the env file gives (this project's machines allow no bridge network);
- compose.mongodb.yaml: the stores on a MongoDB replica set instead of PostgreSQL. No MongoDB
  server can be installed on this project's machines: this override is validated, never run.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from deploy import databases, images
from gateway.agent import AgentSettings
from services import catalogue
from services.catalogue import Need, Service

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 2
# The volume the gateway's bootstrap, contracts, EDS and policy files share.
GATEWAY_DIR = "/gateway"
HEADER = "# Generated from the service catalogue by `make gen` (deploy/compose.py): do not edit.\n"

# Every address and port, as a variable with a default for a normal Docker network.
RABBITMQ = "${RABBITMQ_HOST:-rabbitmq}:${RABBITMQ_PORT:-5672}"
REDIS = "${REDIS_HOST:-redis}:${REDIS_PORT:-6379}"
POSTGRES = "${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}"
GRPC_PORT = "${GRPC_PORT:-50051}"
METRICS_PORT = "${METRICS_PORT:-9464}"
GRAPHQL_PORT = "${GRAPHQL_PORT:-4000}"
SUBGRAPHS_PORT = "${SUBGRAPHS_PORT:-8081}"
# The gateway's agent: `/ready` (its health check) and `/metrics`, never published.
GATEWAY_AGENT_PORT = "${GATEWAY_AGENT_PORT:-9902}"
APP_IMAGE = f"${{ORDERMESH_IMAGE:-{images.APP}}}"
GRAPHQL_IMAGE = f"${{GRAPHQL_IMAGE:-{images.GRAPHQL}}}"
# The gateway's certificate chain and key (PEM), as compose secrets: the files the operator
# names, by default the local CA's that `make compose-env` makes (deploy/env.py, deploy/tls.py).
# Mounted into Envoy's container only, where the bootstrap names them.
TLS_SECRETS = {
    "gateway-tls-cert": "${GATEWAY_TLS_CERT:-./.build/tls/gateway.crt}",
    "gateway-tls-key": "${GATEWAY_TLS_KEY:-./.build/tls/gateway.key}",
}
SECRETS_DIR = "/run/secrets"
# The bootstrap's TLS arguments: the secrets' files, or --plaintext when GATEWAY_PLAINTEXT=1.
TLS_ARGUMENTS = (
    'case "$$GATEWAY_PLAINTEXT" in 1) tls=--plaintext ;; '
    f"*) tls='--tls-cert {SECRETS_DIR}/gateway-tls-cert "
    f"--tls-key {SECRETS_DIR}/gateway-tls-key' ;; esac; "
)
# The agent's health check: exits non-zero unless `/ready` answers 200 (urlopen raises on 503).
AGENT_READY = (
    "import os, urllib.request; "
    "urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/ready', timeout=2)"
)
# Run by the shell: Podman's Docker-compatible API (4.3) splits a CMD health check's arguments
# at every space (`python -c import os, ...`: a syntax error, never healthy), and joins a
# CMD-SHELL one's again before handing it to `sh -c`.
AGENT_HEALTHCHECK = ["CMD-SHELL", f'exec python -c "{AGENT_READY}"']


def _required(name: str) -> str:
    return f"${{{name}:?run make compose-env}}"


def _app(command: list[str], **extra: Any) -> dict[str, Any]:
    """A container of the application image: non-root, read-only, no privileges."""
    return {
        "image": APP_IMAGE,
        "command": command,
        "read_only": True,
        "tmpfs": ["/tmp", "/run/ordermesh"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        **extra,
    }


def store_url(name: str, role: str) -> str:
    """The URL of database `name` for `role` (its owner's or its runtime role's)."""
    password = _required(databases.password_variable(role))
    return f"postgresql://{role}:{password}@{POSTGRES}/{name}"


def stores() -> list[str]:
    """The services that keep state: each has its database."""
    return [s.name for s in catalogue.in_start_order() if Need.STORE in s.needs]


def _policy_environment(fields: Iterable[str]) -> dict[str, str]:
    """The edge policy's keys (chassis.policy) for a process whose settings have `fields`: the
    public half to every follower, the private half to its signer (the auth service) only."""
    env = {}
    if "edge_policy_verify_key" in fields:
        env["EDGE_POLICY_VERIFY_KEY"] = _required("EDGE_POLICY_VERIFY_KEY")
    if "edge_policy_signing_key" in fields:
        env["EDGE_POLICY_SIGNING_KEY"] = _required("EDGE_POLICY_SIGNING_KEY")
    return env


def _internal_environment() -> dict[str, str]:
    """The secret of the internal hops (gateway.envoy's INTERNAL_HEADER), for the processes
    that send or check it: Envoy, its agent (the subgraph listener's check), the federation
    gateway, and each service with a GraphQL subgraph (never their one-shot steps)."""
    return {"INTERNAL_TOKEN": _required("INTERNAL_TOKEN")}


def _service_environment(service: Service) -> dict[str, str]:
    env = {
        "LOG_LEVEL": "${LOG_LEVEL:-INFO}",
        "GRPC_HOST": "${GRPC_HOST:-0.0.0.0}",
        "GRPC_PORT": GRPC_PORT,
        "METRICS_PORT": METRICS_PORT,
        "PORT_FILE": "/run/ordermesh/grpc.port",
        "REDIS_URL": f"redis://:{_required('REDIS_PASSWORD')}@{REDIS}/0",
    }
    if Need.BROKER in service.needs:
        env["RABBITMQ_URL"] = f"amqp://ordermesh:{_required('RABBITMQ_PASSWORD')}@{RABBITMQ}/"
    if Need.STORE in service.needs:
        env["STORE_URL"] = store_url(service.name, databases.runtime(service.name))
    env |= _policy_environment(service.settings.model_fields)
    for callee in service.dependencies:
        variable = service.address_variable(callee)
        # Used while the registry does not answer; a service name resolves to its replicas.
        env[variable] = f"${{{variable}:-{callee}:{GRPC_PORT}}}"
    if "smtp_host" in service.settings.model_fields:
        env |= {
            "SMTP_HOST": "${SMTP_HOST:-mail}",
            "SMTP_PORT": "${SMTP_PORT:-25}",
            "SMS_PROVIDER_URL": "${SMS_PROVIDER_URL:-}",
            "SMS_PROVIDER_TOKEN": "${SMS_PROVIDER_TOKEN:-}",
            "PUSH_PROVIDER_URL": "${PUSH_PROVIDER_URL:-}",
            "PUSH_PROVIDER_TOKEN": "${PUSH_PROVIDER_TOKEN:-}",
        }
    return env


def _infrastructure() -> dict[str, Any]:
    return {
        "rabbitmq": {
            "image": "${RABBITMQ_IMAGE:-docker.io/library/rabbitmq:3.13}",
            "hostname": "rabbitmq",
            "environment": {
                "RABBITMQ_DEFAULT_USER": "ordermesh",
                "RABBITMQ_DEFAULT_PASS": _required("RABBITMQ_PASSWORD"),
                "RABBITMQ_NODE_IP_ADDRESS": "${RABBITMQ_LISTEN:-0.0.0.0}",
                "RABBITMQ_NODE_PORT": "${RABBITMQ_PORT:-5672}",
                "RABBITMQ_DIST_PORT": "${RABBITMQ_DIST_PORT:-25672}",
                "ERL_EPMD_PORT": "${RABBITMQ_EPMD_PORT:-4369}",
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
            "image": "${REDIS_IMAGE:-docker.io/library/redis:7}",
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
                "REDIS_PASSWORD": _required("REDIS_PASSWORD"),
                "REDIS_LISTEN": "${REDIS_LISTEN:-0.0.0.0}",
                "REDIS_PORT": "${REDIS_PORT:-6379}",
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
            "image": "${POSTGRES_IMAGE:-docker.io/library/postgres:15}",
            "command": ["postgres", "-c", "listen_addresses=${POSTGRES_LISTEN:-*}"],
            "environment": {
                "POSTGRES_USER": "ordermesh",
                "POSTGRES_PASSWORD": _required("POSTGRES_PASSWORD"),
                "PGPORT": "${POSTGRES_PORT:-5432}",
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


# Waits for the server (up to 2 minutes: nothing here waits for health checks), then runs the
# roles script as the superuser. `$$` is a `$` to compose and to Kubernetes alike (its Job).
ROLES_COMMAND = (
    "i=0; until pg_isready -q; do i=$$((i + 1)); [ $$i -lt 120 ] || exit 1; sleep 1; done; "
    "exec psql -X -q -v ON_ERROR_STOP=1 -f /ordermesh/init.sql"
)


def _stores() -> dict[str, Any]:
    """The databases' roles, made or brought up to date at every `up` (`postgres-roles`, the
    only container besides the server given the superuser's password), then each service's
    schema, made as its database's owner (`<name>-schema`, given that role's password only)."""
    roles = [role for name in stores() for role in databases.roles(name)]
    rendered: dict[str, Any] = {
        "postgres-roles": {
            "image": "${POSTGRES_IMAGE:-docker.io/library/postgres:15}",
            "command": ["sh", "-c", ROLES_COMMAND],
            "environment": {
                "PGHOST": "${POSTGRES_HOST:-postgres}",
                "PGPORT": "${POSTGRES_PORT:-5432}",
                "PGUSER": "ordermesh",
                "PGDATABASE": "postgres",
                "PGPASSWORD": _required("POSTGRES_PASSWORD"),
                **{
                    databases.password_variable(role): _required(databases.password_variable(role))
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
    for name in stores():
        rendered[f"{name}-schema"] = _app(
            ["python", "-m", "services.schema", name],
            environment={"STORE_URL": store_url(name, databases.owner(name))},
            depends_on={"postgres-roles": {"condition": "service_completed_successfully"}},
        )
    return rendered


def _started(*names: str) -> dict[str, Any]:
    return {name: {"condition": "service_started"} for name in names}


def _schema_made(name: str) -> dict[str, Any]:
    return {f"{name}-schema": {"condition": "service_completed_successfully"}}


def _gateway() -> dict[str, Any]:
    issuer = catalogue.ISSUER.service
    return {
        "create-admin": _app(
            [
                "sh",
                "-c",
                "printenv ADMIN_PASSWORD | exec python -m services.user create-admin "
                '--email "$$ADMIN_EMAIL" --password-stdin --if-missing',
            ],
            environment={
                **_service_environment(catalogue.entry("user")),
                "ADMIN_EMAIL": "${ADMIN_EMAIL:-admin@ordermesh.example}",
                "ADMIN_PASSWORD": _required("ADMIN_PASSWORD"),
            },
            # Until the store answers (nothing here waits for health checks).
            restart="on-failure",
            depends_on={**_started("rabbitmq", "redis", "postgres"), **_schema_made(issuer)},
        ),
        "gateway-config": _app(
            [
                "sh",
                "-c",
                TLS_ARGUMENTS + f"exec python -m gateway.envoy -o {GATEWAY_DIR}/envoy.json "
                '--host "$$GATEWAY_LISTEN" --port "$$GATEWAY_PORT" '
                f"--eds-dir {GATEWAY_DIR}/eds --policy-dir {GATEWAY_DIR}/policy "
                f"--descriptor-set {GATEWAY_DIR}/descriptors.pb "
                '--admin-port "$$GATEWAY_ADMIN_PORT" --graphql-address "$$GRAPHQL_ADDRESS" '
                '--subgraphs-host "$$GATEWAY_LISTEN" --subgraphs-port "$$SUBGRAPHS_PORT" '
                "$$tls --prepare",
            ],
            environment={
                "GATEWAY_PLAINTEXT": "${GATEWAY_PLAINTEXT:-}",
                "GATEWAY_LISTEN": "${GATEWAY_LISTEN:-0.0.0.0}",
                "GATEWAY_PORT": "${GATEWAY_PORT:-8080}",
                "GATEWAY_ADMIN_PORT": "${GATEWAY_ADMIN_PORT:-9901}",
                "GRAPHQL_ADDRESS": f"${{GRAPHQL_HOST:-graphql}}:{GRAPHQL_PORT}",
                "SUBGRAPHS_PORT": SUBGRAPHS_PORT,
            },
            volumes=[f"gateway:{GATEWAY_DIR}"],
            restart="on-failure",
        ),
        "gateway-agent": _app(
            ["python", "-m", "gateway.agent"],
            environment={
                "REDIS_URL": f"redis://:{_required('REDIS_PASSWORD')}@{REDIS}/0",
                "EDS_DIR": f"{GATEWAY_DIR}/eds",
                "POLICY_DIR": f"{GATEWAY_DIR}/policy",
                **_policy_environment(AgentSettings.model_fields),
                **_internal_environment(),
                "HOST": "${GATEWAY_AGENT_LISTEN:-0.0.0.0}",
                "PORT": GATEWAY_AGENT_PORT,
            },
            volumes=[f"gateway:{GATEWAY_DIR}"],
            restart="unless-stopped",
            # Healthy once it holds a verified edge policy and endpoints of every routed
            # service (`/ready`; the image has Python, no curl).
            healthcheck={
                "test": AGENT_HEALTHCHECK,
                "interval": "5s",
                "timeout": "3s",
                "retries": 3,
                "start_period": "20s",
            },
            depends_on={"gateway-config": {"condition": "service_completed_successfully"}},
        ),
        # The GraphQL federation gateway behind Envoy's /graphql (gateway/graphql): our image
        # of Hive Gateway with gateway/graphql's packages (deploy/images.py; its configuration
        # imports more than Hive's official image has), with the configuration and the
        # supergraph of this commit. CORS_ORIGINS: the web origins allowed (none by default).
        "graphql": {
            "image": GRAPHQL_IMAGE,
            "command": ["supergraph", "--config-path", "/gateway/gateway.config.mjs"],
            "read_only": True,
            "tmpfs": ["/tmp"],
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
            "environment": {
                "HOST": "${GRAPHQL_LISTEN:-0.0.0.0}",
                "PORT": GRAPHQL_PORT,
                "SUBGRAPHS_URL": f"http://${{GATEWAY_HOST:-gateway}}:{SUBGRAPHS_PORT}",
                "CORS_ORIGINS": "${CORS_ORIGINS:-}",
                **_internal_environment(),
                "LOG_JSON": "1",
            },
            "volumes": [
                f"./gateway/graphql/{name}:/gateway/{name}:ro"
                for name in ("gateway.config.mjs", "supergraph.graphql")
            ],
            "restart": "unless-stopped",
        },
        "gateway": {
            "image": "${ENVOY_IMAGE:-docker.io/envoyproxy/envoy:v1.40-latest}",
            "command": ["envoy", "-c", f"{GATEWAY_DIR}/envoy.json", "--log-level", "warn"],
            # Envoy adds it to the calls of /graphql and of the subgraph listener's routes.
            "environment": _internal_environment(),
            "volumes": [f"gateway:{GATEWAY_DIR}:ro"],
            "secrets": list(TLS_SECRETS),
            "ports": ["${GATEWAY_PUBLISH:-127.0.0.1:8080}:${GATEWAY_PORT:-8080}"],
            "restart": "unless-stopped",
            "depends_on": {
                "gateway-config": {"condition": "service_completed_successfully"},
                "gateway-agent": {"condition": "service_started"},
            },
        },
    }


def _services() -> dict[str, Any]:
    rendered = {}
    for service in catalogue.in_start_order():
        needs = ["redis"] + (["rabbitmq", "postgres"] if Need.STORE in service.needs else [])
        depends = _started(*needs, *service.dependencies)
        if Need.STORE in service.needs:
            depends |= _schema_made(service.name)
        if service.name == catalogue.ISSUER.service:
            depends |= _started("create-admin")
        environment = _service_environment(service)
        if service.graph:  # its subgraph takes calls carrying the secret only
            environment |= _internal_environment()
        rendered[service.name] = _app(
            list(service.command),
            environment=environment,
            restart="unless-stopped",
            depends_on=depends,
            healthcheck={
                "test": ["CMD", "python", "-m", "chassis.probe"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 3,
                "start_period": "20s",
            },
            # SIGTERM drains (out of the registry, in-flight calls finish) within the grace.
            stop_grace_period="30s",
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


def _monitoring() -> dict[str, Any]:
    """Prometheus (targets from the registry, the rules of monitoring/) and Grafana with the
    dashboard, under the profile `monitoring`: `docker compose --profile monitoring up`."""
    profile = ["monitoring"]
    return {
        "prometheus-targets": _app(
            ["python", "-m", "monitoring.targets"],
            profiles=profile,
            environment={
                "REDIS_URL": f"redis://:{_required('REDIS_PASSWORD')}@{REDIS}/0",
                "TARGETS_FILE": "/etc/prometheus/targets/targets.json",
                "GATEWAY_ADMIN": "${GATEWAY_ADMIN_TARGET:-gateway:9901}",
                "GATEWAY_AGENT": "${GATEWAY_AGENT_TARGET:-gateway-agent:9902}",
            },
            volumes=["prometheus-targets:/etc/prometheus/targets"],
            restart="unless-stopped",
            depends_on=["redis"],
        ),
        "prometheus": {
            "image": "${PROMETHEUS_IMAGE:-docker.io/prom/prometheus:v2.53.2}",
            "profiles": profile,
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--web.listen-address=${PROMETHEUS_LISTEN:-0.0.0.0}:9090",
            ],
            "volumes": [
                "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                "./monitoring/rules.yml:/etc/prometheus/rules.yml:ro",
                "prometheus-targets:/etc/prometheus/targets:ro",
                "prometheus:/prometheus",
            ],
            "ports": ["${PROMETHEUS_PUBLISH:-127.0.0.1:9090}:9090"],
            "restart": "unless-stopped",
            "depends_on": ["prometheus-targets"],
        },
        "grafana": {
            "image": "${GRAFANA_IMAGE:-docker.io/grafana/grafana:11.2.0}",
            "profiles": profile,
            "environment": {
                "PROMETHEUS_ADDRESS": "${PROMETHEUS_ADDRESS:-prometheus:9090}",
                "GF_SERVER_HTTP_ADDR": "${GRAFANA_LISTEN:-0.0.0.0}",
                "GF_SECURITY_ADMIN_PASSWORD": _required("GRAFANA_ADMIN_PASSWORD"),
            },
            "volumes": [
                "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro",
                "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            ],
            "ports": ["${GRAFANA_PUBLISH:-127.0.0.1:3000}:3000"],
            "restart": "unless-stopped",
            "depends_on": ["prometheus"],
        },
    }


def compose() -> dict[str, Any]:
    return {
        "name": "ordermesh",
        "services": {
            **_infrastructure(),
            **_stores(),
            **_gateway(),
            **_services(),
            **_monitoring(),
        },
        "volumes": {
            "rabbitmq": {},
            "postgres": {},
            "gateway": {},
            "prometheus-targets": {},
            "prometheus": {},
        },
        "secrets": {name: {"file": path} for name, path in TLS_SECRETS.items()},
    }


# On the host's network, everything listens on the loopback address only.
LOOPBACK_LISTEN = {
    "rabbitmq": {"RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "ERL_EPMD_ADDRESS": "127.0.0.1"},
    "redis": {"REDIS_LISTEN": "127.0.0.1"},
    "gateway-config": {
        "GATEWAY_LISTEN": "127.0.0.1",
        "GRAPHQL_ADDRESS": f"127.0.0.1:{GRAPHQL_PORT}",
    },
    "graphql": {
        "HOST": "127.0.0.1",
        "SUBGRAPHS_URL": f"http://127.0.0.1:{SUBGRAPHS_PORT}",
    },
    "gateway-agent": {"HOST": "127.0.0.1"},
    "prometheus-targets": {
        "GATEWAY_ADMIN": "127.0.0.1:9901",
        "GATEWAY_AGENT": f"127.0.0.1:{GATEWAY_AGENT_PORT}",
    },
    "grafana": {"PROMETHEUS_ADDRESS": "127.0.0.1:9090", "GF_SERVER_HTTP_ADDR": "127.0.0.1"},
}


def host_network(base: dict[str, Any]) -> dict[str, Any]:
    """Every container on the host's network, listening on 127.0.0.1 (nothing published:
    it listens there; no host name of its own: it has the host's)."""
    services: dict[str, Any] = {}
    for name, spec in base["services"].items():
        services[name] = {"network_mode": "host"}
        if "ports" in spec:
            services[name]["ports"] = Reset()
        if "hostname" in spec:
            services[name]["hostname"] = ResetValue()
        if name in LOOPBACK_LISTEN:
            services[name]["environment"] = LOOPBACK_LISTEN[name]
        if "GRPC_HOST" in spec.get("environment", {}):
            # Replicas share the host's ports: each takes a free one, published in the
            # registry (and in PORT_FILE, for its health check).
            services[name]["environment"] = {
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": "0",
                "METRICS_PORT": "0",
            }
        if name == "postgres":
            services[name]["command"] = ["postgres", "-c", "listen_addresses=127.0.0.1"]
        if name == "prometheus":
            services[name]["command"] = [
                *base["services"][name]["command"][:-1],
                "--web.listen-address=127.0.0.1:9090",
            ]
    return {"services": services}


class Reset(list[Any]):
    """An empty list that replaces the base file's instead of adding to it (`!reset []`)."""


class ResetValue:
    """A value the base file had, taken away (`!reset ''`)."""


def mongodb() -> dict[str, Any]:
    services: dict[str, Any] = {
        "mongodb": {
            "image": "${MONGODB_IMAGE:-docker.io/library/mongo:7}",
            "command": ["mongod", "--replSet", "rs0", "--bind_ip_all"],
            "volumes": ["mongodb:/data/db"],
            "restart": "unless-stopped",
        },
        # Transactions need a replica set: initiate it once (an error when it exists is fine).
        "mongodb-init": {
            "image": "${MONGODB_IMAGE:-docker.io/library/mongo:7}",
            "command": [
                "sh",
                "-c",
                'mongosh --host "$$MONGODB_HOST" --eval '
                "'try { rs.status() } catch (e) { rs.initiate() }'",
            ],
            "environment": {"MONGODB_HOST": "${MONGODB_HOST:-mongodb}:${MONGODB_PORT:-27017}"},
            "restart": "on-failure",
            "depends_on": ["mongodb"],
        },
    }
    url = "mongodb://${MONGODB_HOST:-mongodb}:${MONGODB_PORT:-27017}/?replicaSet=rs0"
    for service in catalogue.in_start_order():
        if Need.STORE in service.needs:
            services[service.name] = {
                "environment": {"STORE_URL": url, "STORE_DATABASE": service.name},
                "depends_on": ["mongodb-init"],
            }
    services["create-admin"] = dict(services["user"])
    return {"services": services, "volumes": {"mongodb": {}}}


def init_sql() -> str:
    """deploy/postgres/init.sql: the databases and roles of every service that keeps state."""
    return databases.init_sql(stores())


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(Reset, lambda dumper, _: dumper.represent_sequence("!reset", []))
_Dumper.add_representer(ResetValue, lambda dumper, _: dumper.represent_scalar("!reset", ""))


def dump(document: dict[str, Any]) -> str:
    return HEADER + str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    root = parser.parse_args().root
    base = compose()
    (root / "compose.yaml").write_text(dump(base))
    (root / "deploy" / "compose.host-network.yaml").write_text(dump(host_network(base)))
    (root / "deploy" / "compose.mongodb.yaml").write_text(dump(mongodb()))
    (root / "deploy" / "postgres").mkdir(exist_ok=True)
    (root / "deploy" / "postgres" / "init.sql").write_text(init_sql())


if __name__ == "__main__":
    main()
