"""The infrastructure in the cluster: Redis (the registry), RabbitMQ (a StatefulSet: one node in
base, a cluster in prod) and, in dev, PostgreSQL with the Job that makes each service's
database and roles (ordermesh.deploy.databases)."""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import databases, facts
from ordermesh.deploy.databases import ROLES_COMMAND
from ordermesh.deploy.manifests.environment import field_ref
from ordermesh.deploy.manifests.pods import (
    RESOURCES,
    SERVICE_RESOURCES,
    cluster_service,
    container_security,
    exec_probe,
    headless_service,
    labels,
    pod_template,
    scratch,
    selector,
)
from ordermesh.deploy.manifests.secrets import (
    POSTGRES_ROLES_SECRET,
    POSTGRES_SECRET,
    RABBITMQ_SECRET,
    REDIS_SECRET,
    secret_ref,
)

__all__ = ["postgres", "postgres_roles", "rabbitmq", "rabbitmq_conf", "redis"]


def redis() -> list[dict[str, Any]]:
    volumes, mounts = scratch("/tmp", "/data")
    container = {
        "name": "redis",
        "image": facts.REDIS_IMAGE,
        # The password reaches Redis in a file only its user reads, never on a command line.
        "command": [
            "sh",
            "-c",
            'umask 077 && printf "requirepass %s\\n" "$REDIS_PASSWORD" > /tmp/redis.conf '
            f"&& exec redis-server /tmp/redis.conf --port {facts.REDIS_PORT} "
            '--save "" --appendonly no',
        ],
        "env": [{"name": "REDIS_PASSWORD", **secret_ref(REDIS_SECRET, "password")}],
        "ports": [{"name": "redis", "containerPort": facts.REDIS_PORT}],
        "resources": RESOURCES["redis"],
        "securityContext": container_security(999),
        "volumeMounts": mounts,
        "livenessProbe": exec_probe(
            ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping'], period_s=10, failures=3
        ),
        "readinessProbe": exec_probe(
            ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG'],
            period_s=5,
            failures=2,
        ),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "redis", "labels": labels("redis", "registry")},
        "spec": {
            "replicas": 1,
            "selector": selector("redis"),
            # The registry is soft state (instances register again within a heartbeat): one
            # Redis, replaced in place; the services answer without it (docs/kubernetes.md).
            "strategy": {"type": "Recreate"},
            "template": pod_template(
                "redis", "registry", {"containers": [container], "volumes": volumes}, 999
            ),
        },
    }
    service = cluster_service("redis", "registry", "redis", facts.REDIS_PORT)
    return [deployment, service]


def rabbitmq_conf(nodes: int, namespace: str) -> str:
    lines = [
        f"listeners.tcp.default = {facts.AMQP_PORT}",
        "loopback_users = none",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(
            f"cluster_formation.classic_config.nodes.{n + 1} = rabbit@rabbitmq-{n}.rabbitmq-nodes."
            f"{namespace}.svc.cluster.local"
            for n in range(nodes)
        ),
        # The minority side of a partition stops (and its clients move to the majority).
        "cluster_partition_handling = pause_minority",
        "vm_memory_high_watermark.relative = 0.4",
        "disk_free_limit.absolute = 2GB",
    ]
    return "\n".join(lines) + "\n"


def rabbitmq(nodes: int, storage: str, namespace: str) -> list[dict[str, Any]]:
    volumes, mounts = scratch("/tmp", "/var/log/rabbitmq")
    data = {"name": "data", "mountPath": "/var/lib/rabbitmq"}
    config = {"name": "config", "mountPath": "/etc/rabbitmq", "readOnly": True}
    cookie = {"name": "cookie", "mountPath": "/cookie", "readOnly": True}
    env = [
        {"name": "POD_NAME", **field_ref("metadata.name")},
        {"name": "RABBITMQ_DEFAULT_USER", "value": "ordermesh"},
        {"name": "RABBITMQ_DEFAULT_PASS", **secret_ref(RABBITMQ_SECRET, "password")},
        {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
        {
            "name": "RABBITMQ_NODENAME",
            "value": f"rabbit@$(POD_NAME).rabbitmq-nodes.{namespace}.svc.cluster.local",
        },
        {"name": "RABBITMQ_CONFIG_FILE", "value": "/etc/rabbitmq/rabbitmq.conf"},
        {"name": "RABBITMQ_ENABLED_PLUGINS_FILE", "value": "/etc/rabbitmq/enabled_plugins"},
    ]
    # The Erlang cookie must be the node user's own file, readable by it alone: a Secret's
    # files are not, so it is copied into place first.
    copy_cookie = {
        "name": "cookie",
        "image": facts.RABBITMQ_IMAGE,
        "command": [
            "sh",
            "-c",
            "cp /cookie/erlang-cookie /var/lib/rabbitmq/.erlang.cookie "
            "&& chmod 400 /var/lib/rabbitmq/.erlang.cookie",
        ],
        "resources": RESOURCES["redis"],
        "securityContext": container_security(999),
        "volumeMounts": [data, cookie],
    }
    node = {
        "name": "rabbitmq",
        "image": facts.RABBITMQ_IMAGE,
        "env": env,
        "ports": [
            {"name": "amqp", "containerPort": facts.AMQP_PORT},
            {"name": "epmd", "containerPort": facts.EPMD_PORT},
            {"name": "dist", "containerPort": facts.DIST_PORT},
            {"name": "metrics", "containerPort": facts.RABBITMQ_METRICS_PORT},
        ],
        "resources": RESOURCES["rabbitmq"],
        "securityContext": container_security(999),
        "volumeMounts": [data, config, *mounts],
        "startupProbe": exec_probe(["rabbitmq-diagnostics", "-q", "ping"], period_s=5, failures=60),
        "livenessProbe": exec_probe(
            ["rabbitmq-diagnostics", "-q", "ping"], period_s=30, failures=3
        ),
        "readinessProbe": exec_probe(
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], period_s=10, failures=3
        ),
        # A node leaves only when no quorum queue would lose its majority with it.
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": [
                        "sh",
                        "-c",
                        "rabbitmq-upgrade await_online_quorum_plus_one -t 300; "
                        "rabbitmq-upgrade drain -t 60",
                    ]
                }
            }
        },
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "rabbitmq", "labels": labels("rabbitmq", "broker")},
        "spec": {
            "replicas": nodes,
            "serviceName": "rabbitmq-nodes",
            # The nodes find each other at their first start: they start together.
            "podManagementPolicy": "Parallel",
            "selector": selector("rabbitmq"),
            "updateStrategy": {"type": "RollingUpdate"},
            "template": pod_template(
                "rabbitmq",
                "broker",
                {
                    "terminationGracePeriodSeconds": 600,
                    "initContainers": [copy_cookie],
                    "containers": [node],
                    "volumes": [
                        *volumes,
                        {"name": "config", "configMap": {"name": "rabbitmq-config"}},
                        {
                            "name": "cookie",
                            "secret": {"secretName": RABBITMQ_SECRET, "defaultMode": 0o440},
                        },
                    ],
                },
                999,
            ),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }
    return [
        statefulset,
        headless_service(
            "rabbitmq-nodes",
            "broker",
            [("amqp", facts.AMQP_PORT), ("epmd", facts.EPMD_PORT), ("dist", facts.DIST_PORT)],
            pods="rabbitmq",
            publishNotReadyAddresses=True,
        ),
        cluster_service("rabbitmq", "broker", "amqp", facts.AMQP_PORT),
    ]


def postgres(stores: list[str]) -> list[dict[str, Any]]:
    volumes, mounts = scratch("/tmp", "/var/run/postgresql")
    container = {
        "name": "postgres",
        "image": facts.POSTGRES_IMAGE,
        "env": [
            {"name": "POSTGRES_USER", "value": "ordermesh"},
            {"name": "POSTGRES_PASSWORD", **secret_ref(POSTGRES_SECRET, "password")},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": facts.POSTGRES_PORT}],
        "resources": RESOURCES["postgres"],
        "securityContext": container_security(999),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}, *mounts],
        "livenessProbe": exec_probe(["pg_isready", "-U", "ordermesh"], period_s=10, failures=3),
        "readinessProbe": exec_probe(["pg_isready", "-U", "ordermesh"], period_s=5, failures=2),
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "postgres", "labels": labels("postgres", "database")},
        "spec": {
            "replicas": 1,
            "serviceName": "postgres",
            "selector": selector("postgres"),
            "template": pod_template(
                "postgres",
                "database",
                {"containers": [container], "volumes": volumes},
                999,
            ),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    service = cluster_service("postgres", "database", "postgres", facts.POSTGRES_PORT)
    return [statefulset, service, postgres_roles(stores)]


def postgres_roles(stores: list[str]) -> dict[str, Any]:
    """The Job that makes each service's database and roles, or brings them up to date, as the
    superuser (ordermesh.deploy.databases's script, idempotent): the only pod besides the server
    given the superuser's password. Deleted a while after it ends, so that the next `kubectl apply`
    runs it again (a new service's database, changed passwords)."""
    roles = [role for name in stores for role in databases.roles(name)]
    volumes, mounts = scratch("/tmp")
    container = {
        "name": "roles",
        "image": facts.POSTGRES_IMAGE,
        "command": ["sh", "-c", ROLES_COMMAND],
        "env": [
            {"name": "PGHOST", "value": "postgres"},
            {"name": "PGPORT", "value": str(facts.POSTGRES_PORT)},
            {"name": "PGUSER", "value": "ordermesh"},
            {"name": "PGDATABASE", "value": "postgres"},
            {"name": "PGPASSWORD", **secret_ref(POSTGRES_SECRET, "password")},
            *(
                {
                    "name": databases.password_variable(role),
                    **secret_ref(POSTGRES_ROLES_SECRET, role),
                }
                for role in roles
            ),
        ],
        "resources": SERVICE_RESOURCES,
        "securityContext": container_security(999),
        "volumeMounts": [{"name": "init", "mountPath": "/ordermesh", "readOnly": True}, *mounts],
    }
    pod = pod_template(
        "postgres-roles",
        "database",
        {
            "restartPolicy": "OnFailure",
            "containers": [container],
            "volumes": [{"name": "init", "configMap": {"name": "postgres-init"}}, *volumes],
        },
        999,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "postgres-roles", "labels": labels("postgres-roles", "database")},
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 600, "template": pod},
    }
