"""compose.yaml's console, monitoring and observability on paper (neither profile runs on this
project's machines: their official images come from a registry they cannot reach):

- the console, rendered from the catalogue like every service, reaches Envoy on the compose
  network (HTTPS by default) and verifies it with the CA of the compose secret `gateway-ca`;
  on the host's network, at 127.0.0.1;
- the profile `monitoring`: Prometheus's configuration (checked by promtool) sends the alerts to
  Alertmanager, whose configuration is monitoring/alertmanager.yml, mounted read-only;
- the profile `observability`: Jaeger, and the services' spans sent to it only when the
  operator says so (OTEL_EXPORTER_OTLP_ENDPOINT, empty by default);
- Docker Compose accepts the file with each profile, and each override;
- `make compose-env` asks for the gateway certificate's CA with an operator's certificate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ordermesh.deploy import compose, facts

from deploy.env import CA_FILE, write
from deploy.env import main as env_main
from harness.compose import compose_binary
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PROMTOOL = ROOT / ".build" / "prometheus" / "usr" / "bin" / "promtool"
PROFILES = ("monitoring", "observability")


def _config(tmp_path: Path, *files: str, profiles: tuple[str, ...] = ()) -> dict:
    """The project as Docker Compose reads it (variables at their defaults)."""
    env_file = tmp_path / "compose.env"
    write(env_file, {})
    paths = [arg for path in ("compose.yaml", *files) for arg in ("-f", str(ROOT / path))]
    chosen = [arg for profile in profiles for arg in ("--profile", profile)]
    done = subprocess.run(
        [compose_binary(), "--project-directory", str(ROOT), "--env-file", str(env_file),
         *paths, *chosen, "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize(
    "profiles", [(), ("monitoring",), ("observability",), PROFILES], ids=lambda p: "+".join(p)
)
@pytest.mark.parametrize(
    "overrides",
    [(), ("deploy/compose.host-network.yaml",), ("deploy/compose.mongodb.yaml",)],
    ids=["base", "host-network", "mongodb"],
)
def test_docker_compose_accepts_the_file_with_each_profile(tmp_path, profiles, overrides):
    services = _config(tmp_path, *overrides, profiles=profiles)["services"]
    assert ("jaeger" in services) == ("observability" in profiles)
    assert ("alertmanager" in services) == ("monitoring" in profiles)
    assert ("grafana" in services) == ("monitoring" in profiles)
    assert "console" in services


def test_only_monitoring_and_observability_are_under_a_profile():
    profiled = {
        name: spec["profiles"] for name, spec in BASE["services"].items() if "profiles" in spec
    }
    assert profiled == {
        "prometheus-targets": ["monitoring"],
        "prometheus": ["monitoring"],
        "alertmanager": ["monitoring"],
        "grafana": ["monitoring"],
        "jaeger": ["observability"],
    }


# The console.


def test_the_console_verifies_the_gateway_with_the_ca_of_a_compose_secret(tmp_path):
    console = BASE["services"]["console"]
    assert console["secrets"] == [compose.GATEWAY_CA_SECRET]
    assert console["environment"]["GATEWAY_CA"] == f"{compose.SECRETS_DIR}/gateway-ca"
    assert BASE["secrets"]["gateway-ca"] == {"file": "${GATEWAY_TLS_CA:-./.build/tls/ca.crt}"}
    # Only the clients of the gateway get it; the gateway's key stays in Envoy's container.
    holders = {name for name, spec in BASE["services"].items() if "secrets" in spec}
    assert holders == {"gateway"} | {s.name for s in catalogue.CATALOGUE if s.calls_gateway}
    assert "gateway-tls-key" not in console["secrets"]
    base = _config(tmp_path)["services"]["console"]["environment"]
    assert base["GATEWAY_URL"] == f"https://gateway:{facts.GATEWAY_PORT}"
    host = _config(tmp_path, "deploy/compose.host-network.yaml")["services"]["console"]
    assert host["environment"]["GATEWAY_URL"] == f"https://127.0.0.1:{facts.GATEWAY_PORT}"
    assert host["environment"]["PROMETHEUS_URL"] == f"http://127.0.0.1:{facts.PROMETHEUS_PORT}"
    assert host["environment"]["ALERTMANAGER_URL"] == (
        f"http://127.0.0.1:{facts.ALERTMANAGER_PORT}")  # fmt: skip


def test_the_console_reads_the_monitoring_of_its_profiles(tmp_path):
    environment = _config(tmp_path)["services"]["console"]["environment"]
    assert environment["PROMETHEUS_URL"] == f"http://prometheus:{facts.PROMETHEUS_PORT}"
    assert environment["ALERTMANAGER_URL"] == f"http://alertmanager:{facts.ALERTMANAGER_PORT}"
    assert environment["JAEGER_URL"] == ""  # where a browser opens a trace: the operator's say
    assert BASE["services"]["console"]["environment"]["JAEGER_URL"] == "${JAEGER_URL:-}"


def test_compose_env_asks_for_the_ca_with_the_operators_certificate(tmp_path, monkeypatch, capsys):
    for name in ("site.crt", "site.key", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    given = ["GATEWAY_TLS_CERT=site.crt", "GATEWAY_TLS_KEY=site.key"]
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(tmp_path / "a.env"), *given])
    assert env_main() == 1
    assert CA_FILE in capsys.readouterr().err
    monkeypatch.setattr(
        sys, "argv", ["deploy.env", "-o", str(tmp_path / "b.env"), *given, f"{CA_FILE}=ca.pem"]
    )
    assert env_main() == 0
    assert "ca.pem" in capsys.readouterr().out
    assert not (tmp_path / ".build").exists()
    # Alone it would not be the CA of the local certificate made instead.
    monkeypatch.setattr(
        sys, "argv", ["deploy.env", "-o", str(tmp_path / "c.env"), f"{CA_FILE}=ca.pem"]
    )
    assert env_main() == 1
    assert CA_FILE in capsys.readouterr().err


# Prometheus and Alertmanager (profile `monitoring`).


@pytest.mark.parametrize(
    ("overrides", "alertmanager"),
    [((), f"alertmanager:{facts.ALERTMANAGER_PORT}"),
     (("deploy/compose.host-network.yaml",), f"127.0.0.1:{facts.ALERTMANAGER_PORT}")],
    ids=["base", "host-network"],
)  # fmt: skip
def test_prometheus_sends_its_alerts_to_alertmanager(tmp_path, overrides, alertmanager):
    project = _config(tmp_path, *overrides, profiles=("monitoring",))
    prometheus = project["services"]["prometheus"]
    [mounted] = prometheus["configs"]
    assert mounted["target"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load(project["configs"][mounted["source"]]["content"])
    [sent_to] = config["alerting"]["alertmanagers"]
    assert sent_to["static_configs"] == [{"targets": [alertmanager]}]
    assert config["rule_files"] == ["rules.yml"]
    assert any(v["target"] == "/etc/prometheus/rules.yml" for v in prometheus["volumes"])
    # `make test` and `make lint` unpack it first (tools/prometheus.sh): missing is a broken set-up.
    assert PROMTOOL.exists(), f"{PROMTOOL} missing: run `make .build/prometheus/usr/bin/prometheus`"
    (tmp_path / "prometheus.yml").write_text(project["configs"][mounted["source"]]["content"])
    shutil.copy(ROOT / "monitoring" / "rules.yml", tmp_path / "rules.yml")
    checked = subprocess.run(
        [str(PROMTOOL), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alertmanager_runs_the_repositorys_configuration_alone_and_unprivileged():
    alertmanager = BASE["services"]["alertmanager"]
    assert alertmanager["image"] == f"${{ALERTMANAGER_IMAGE:-{facts.ALERTMANAGER_IMAGE}}}"
    assert facts.ALERTMANAGER_IMAGE.startswith("docker.io/prom/alertmanager:v")
    assert (
        "./monitoring/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in alertmanager["volumes"]
    )
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "--cluster.listen-address=" in alertmanager["command"]  # no gossip port
    assert alertmanager["read_only"] is True
    assert alertmanager["cap_drop"] == ["ALL"]


# Jaeger (profile `observability`).


def test_the_services_send_spans_only_where_the_operator_says(tmp_path):
    for service in catalogue.CATALOGUE:
        environment = BASE["services"][service.name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    for profiles in ((), PROFILES):
        services = _config(tmp_path, profiles=profiles)["services"]
        assert all(
            services[s.name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
            for s in catalogue.CATALOGUE
        )


def test_jaeger_receives_otlp_on_every_address_of_its_container_or_the_loopback(tmp_path):
    jaeger = BASE["services"]["jaeger"]
    assert jaeger["image"] == f"${{JAEGER_IMAGE:-{facts.JAEGER_IMAGE}}}"
    assert facts.JAEGER_IMAGE.startswith("docker.io/jaegertracing/all-in-one:")
    base = _config(tmp_path, profiles=("observability",))["services"]["jaeger"]
    assert base["environment"]["COLLECTOR_OTLP_GRPC_HOST_PORT"] == (
        f"0.0.0.0:{facts.OTLP_GRPC_PORT}")  # fmt: skip
    assert [p["target"] for p in base["ports"]] == [facts.JAEGER_UI_PORT]
    host = _config(tmp_path, "deploy/compose.host-network.yaml", profiles=("observability",))
    listeners = {k: v for k, v in host["services"]["jaeger"]["environment"].items()
                 if k.endswith("HOST_PORT")}  # fmt: skip
    assert listeners
    assert all(v.startswith("127.0.0.1:") for v in listeners.values())
