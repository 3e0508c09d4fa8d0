"""compose.yaml's monitoring and observability, each under a profile of its own:

- `monitoring`: Prometheus (its targets from the registry, the rules of the project's
  `monitoring` directory, its alerts sent to Alertmanager), Alertmanager (that directory's
  alertmanager.yml) and Grafana with its provisioning and dashboards (its grafana/):
  `docker compose --profile monitoring up`;
- `observability`: Jaeger's all-in-one, receiving the services' spans over OTLP/gRPC and showing
  them: `docker compose --profile observability up`, with OTEL_EXPORTER_OTLP_ENDPOINT (where
  the services send spans; empty by default: none) and JAEGER_URL (where the console links a
  trace) set in the env file.
"""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import facts, prometheus
from ordermesh.deploy.compose import TARGET, app, overridable, published, required
from ordermesh.deploy.project import Project

__all__ = [
    "JAEGER_LISTENERS",
    "MONITORING",
    "OBSERVABILITY",
    "Block",
    "configs",
    "monitoring",
    "prometheus_config",
]

MONITORING = "monitoring"
OBSERVABILITY = "observability"
# Prometheus's configuration (ordermesh.deploy.prometheus, with its alerts sent to `alertmanager`)
# as an inline compose config, mounted where the rules sit beside it.
PROMETHEUS_CONFIG = "prometheus"
PROMETHEUS_DIR = "/etc/prometheus"
ALERTMANAGER_TARGET = f"alertmanager:{facts.ALERTMANAGER_PORT}"
# Jaeger's listeners (all-in-one 1.x, each a variable named after its flag): the UI and its API,
# the OTLP receivers, its own collector's and admin ports. Each is set (1.60 and later listen on
# localhost only by default).
JAEGER_LISTENERS = {
    "QUERY_HTTP_SERVER_HOST_PORT": facts.JAEGER_UI_PORT,
    "QUERY_GRPC_SERVER_HOST_PORT": 16685,
    "COLLECTOR_OTLP_GRPC_HOST_PORT": facts.OTLP_GRPC_PORT,
    "COLLECTOR_OTLP_HTTP_HOST_PORT": 4318,
    "COLLECTOR_GRPC_SERVER_HOST_PORT": 14250,
    "COLLECTOR_HTTP_SERVER_HOST_PORT": 14268,
    "ADMIN_HTTP_HOST_PORT": 14269,
}
# Official images with no writable root of their own needed: no privileges either.
LOCKED_DOWN = {
    "read_only": True,
    "security_opt": ["no-new-privileges:true"],
    "cap_drop": ["ALL"],
}


class Block(str):
    """A text written as a YAML literal block (`|`), as it reads in its own file."""

    __slots__ = ()


def prometheus_config(alertmanager: str) -> Block:
    """Prometheus's configuration, its alerts sent to `alertmanager` (host:port; a compose
    variable's default: the operator may name another)."""
    return Block(prometheus.render(prometheus.config(alertmanagers=[alertmanager])))


def configs() -> dict[str, Any]:
    """compose.yaml's top-level `configs`."""
    target = overridable("ALERTMANAGER_TARGET", ALERTMANAGER_TARGET)
    return {PROMETHEUS_CONFIG: {"content": prometheus_config(target)}}


def monitoring(project: Project) -> dict[str, Any]:
    profile = [MONITORING]
    files = f"./{project.monitoring}"
    return {
        "prometheus-targets": app(
            project,
            ["python", "-m", "ordermesh.targets"],
            profiles=profile,
            environment={
                "REDIS_URL": TARGET.registry(),
                "CATALOGUE": TARGET.value(project.catalogue_at),
                "TARGETS_FILE": f"{PROMETHEUS_DIR}/{prometheus.TARGETS}",
                "GATEWAY_ADMIN": overridable(
                    "GATEWAY_ADMIN_TARGET", f"gateway:{facts.GATEWAY_ADMIN_PORT}"
                ),
                "GATEWAY_AGENT": overridable(
                    "GATEWAY_AGENT_TARGET", f"gateway-agent:{facts.AGENT_PORT}"
                ),
            },
            volumes=[f"prometheus-targets:{PROMETHEUS_DIR}/targets"],
            restart="unless-stopped",
            depends_on=["redis"],
        ),
        "prometheus": {
            "image": overridable("PROMETHEUS_IMAGE", facts.PROMETHEUS_IMAGE),
            "profiles": profile,
            "command": [
                f"--config.file={PROMETHEUS_DIR}/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address=${{PROMETHEUS_LISTEN:-0.0.0.0}}:{facts.PROMETHEUS_PORT}",
            ],
            "configs": [
                {"source": PROMETHEUS_CONFIG, "target": f"{PROMETHEUS_DIR}/prometheus.yml"}
            ],
            "volumes": [
                f"{files}/{prometheus.RULES}:{PROMETHEUS_DIR}/{prometheus.RULES}:ro",
                f"prometheus-targets:{PROMETHEUS_DIR}/targets:ro",
                "prometheus:/prometheus",
            ],
            "ports": [published("PROMETHEUS_PUBLISH", facts.PROMETHEUS_PORT)],
            "restart": "unless-stopped",
            "depends_on": ["prometheus-targets", "alertmanager"],
        },
        # One Alertmanager (no cluster: no gossip port), its silences and notification log in
        # its volume.
        "alertmanager": {
            "image": overridable("ALERTMANAGER_IMAGE", facts.ALERTMANAGER_IMAGE),
            "profiles": profile,
            "command": [
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
                "--cluster.listen-address=",
                f"--web.listen-address=${{ALERTMANAGER_LISTEN:-0.0.0.0}}:{facts.ALERTMANAGER_PORT}",
            ],
            "volumes": [
                f"{files}/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro",
                "alertmanager:/alertmanager",
            ],
            **LOCKED_DOWN,
            "ports": [published("ALERTMANAGER_PUBLISH", facts.ALERTMANAGER_PORT)],
            "restart": "unless-stopped",
        },
        "grafana": {
            "image": overridable("GRAFANA_IMAGE", facts.GRAFANA_IMAGE),
            "profiles": profile,
            "environment": {
                "PROMETHEUS_ADDRESS": overridable(
                    "PROMETHEUS_ADDRESS", f"prometheus:{facts.PROMETHEUS_PORT}"
                ),
                "GF_SERVER_HTTP_ADDR": "${GRAFANA_LISTEN:-0.0.0.0}",
                "GF_SECURITY_ADMIN_PASSWORD": required("GRAFANA_ADMIN_PASSWORD"),
            },
            "volumes": [
                f"{files}/grafana/provisioning:/etc/grafana/provisioning:ro",
                f"{files}/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            ],
            "ports": [published("GRAFANA_PUBLISH", facts.GRAFANA_PORT)],
            "restart": "unless-stopped",
            "depends_on": ["prometheus"],
        },
        # Traces in memory (a restart forgets them): the UI published, the OTLP receiver
        # reached by the services on this network only.
        "jaeger": {
            "image": overridable("JAEGER_IMAGE", facts.JAEGER_IMAGE),
            "profiles": [OBSERVABILITY],
            "environment": {
                "COLLECTOR_OTLP_ENABLED": "true",
                **{
                    variable: f"${{JAEGER_LISTEN:-0.0.0.0}}:{port}"
                    for variable, port in JAEGER_LISTENERS.items()
                },
            },
            **LOCKED_DOWN,
            "tmpfs": ["/tmp"],
            "ports": [published("JAEGER_PUBLISH", facts.JAEGER_UI_PORT)],
            "restart": "unless-stopped",
        },
    }
