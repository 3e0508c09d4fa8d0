"""compose.yaml's monitoring: Prometheus, its targets from the registry, and Grafana."""

from __future__ import annotations

from typing import Any

from deploy import facts
from deploy.compose import TARGET, app, overridable, published, required

__all__ = ["monitoring"]


def monitoring() -> dict[str, Any]:
    """Prometheus (targets from the registry, the rules of monitoring/) and Grafana with the
    dashboard, under the profile `monitoring`: `docker compose --profile monitoring up`."""
    profile = ["monitoring"]
    return {
        "prometheus-targets": app(
            ["python", "-m", "monitoring.targets"],
            profiles=profile,
            environment={
                "REDIS_URL": TARGET.registry(),
                "TARGETS_FILE": "/etc/prometheus/targets/targets.json",
                "GATEWAY_ADMIN": overridable(
                    "GATEWAY_ADMIN_TARGET", f"gateway:{facts.GATEWAY_ADMIN_PORT}"
                ),
                "GATEWAY_AGENT": overridable(
                    "GATEWAY_AGENT_TARGET", f"gateway-agent:{facts.AGENT_PORT}"
                ),
            },
            volumes=["prometheus-targets:/etc/prometheus/targets"],
            restart="unless-stopped",
            depends_on=["redis"],
        ),
        "prometheus": {
            "image": overridable("PROMETHEUS_IMAGE", facts.PROMETHEUS_IMAGE),
            "profiles": profile,
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address=${{PROMETHEUS_LISTEN:-0.0.0.0}}:{facts.PROMETHEUS_PORT}",
            ],
            "volumes": [
                "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                "./monitoring/rules.yml:/etc/prometheus/rules.yml:ro",
                "prometheus-targets:/etc/prometheus/targets:ro",
                "prometheus:/prometheus",
            ],
            "ports": [published("PROMETHEUS_PUBLISH", facts.PROMETHEUS_PORT)],
            "restart": "unless-stopped",
            "depends_on": ["prometheus-targets"],
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
                "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro",
                "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            ],
            "ports": [published("GRAFANA_PUBLISH", facts.GRAFANA_PORT)],
            "restart": "unless-stopped",
            "depends_on": ["prometheus"],
        },
    }
