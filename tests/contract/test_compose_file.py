"""compose.yaml keeps its promises on paper (it runs for real in tests/containers): every
service of the catalogue with its replicas, health check, restart and rolling-update policies,
a read-only root and no privileges; every secret a variable that must be set; every address a
variable; and Docker Compose itself accepts it with each override (`docker-compose config`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import compose
from deploy.env import SECRETS, write
from harness.compose import compose_binary
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.mark.parametrize("service", catalogue.CATALOGUE, ids=lambda s: s.name)
def test_every_service_runs_replicated_healthy_and_unprivileged(service):
    spec = BASE["services"][service.name]
    assert spec["command"] == list(service.command)
    assert spec["deploy"]["replicas"] == compose.REPLICAS >= 2
    assert spec["deploy"]["update_config"]["order"] == "start-first"
    assert spec["deploy"]["update_config"]["parallelism"] == 1
    assert spec["restart"] == "unless-stopped"
    assert spec["healthcheck"]["test"] == ["CMD", "python", "-m", "chassis.probe"]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert set(service.dependencies) <= set(spec["depends_on"])


def test_every_secret_is_a_variable_that_must_be_set():
    text = (ROOT / "compose.yaml").read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} is not required"
    for name, spec in BASE["services"].items():
        for variable, value in spec.get("environment", {}).items():
            if any(word in variable for word in ("PASSWORD", "PASS", "KEY", "TOKEN")):
                assert str(value).startswith("${"), f"{name}: {variable} has a literal value"


def test_every_address_comes_from_a_variable():
    for name, spec in BASE["services"].items():
        for variable, value in spec.get("environment", {}).items():
            if variable.endswith(("_URL", "_HOST", "_ADDR", "_PORT")) and value:
                assert "${" in str(value), f"{name}: {variable}={value} is not a variable"


def test_one_database_per_service_that_keeps_state():
    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    for service in catalogue.CATALOGUE:
        created = f'CREATE DATABASE "{service.name}"' in sql
        assert created == (catalogue.Need.STORE in service.needs), service.name


@pytest.mark.parametrize(
    "overrides",
    [(), ("deploy/compose.host-network.yaml",), ("deploy/compose.mongodb.yaml",)],
    ids=["base", "host-network", "mongodb"],
)
def test_docker_compose_accepts_the_file_with_each_override(overrides, tmp_path):
    env_file = tmp_path / "compose.env"
    write(env_file, {})
    files = [arg for path in ("compose.yaml", *overrides) for arg in ("-f", str(ROOT / path))]
    checked = subprocess.run(
        [compose_binary(), "--project-directory", str(ROOT), "--env-file", str(env_file),
         *files, "config", "--quiet"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_on_the_host_network_nothing_is_published_and_everything_is_on_loopback(tmp_path):
    env_file = tmp_path / "compose.env"
    write(env_file, {})
    rendered = subprocess.run(
        [compose_binary(), "--project-directory", str(ROOT), "--env-file", str(env_file),
         "-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "deploy/compose.host-network.yaml"),
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    services = yaml.safe_load(rendered)["services"]
    for name, spec in services.items():
        assert spec["network_mode"] == "host", name
        assert not spec.get("ports"), name
        environment = spec.get("environment") or {}
        for variable in ("GRPC_HOST", "GATEWAY_LISTEN", "REDIS_LISTEN"):
            if variable in environment:
                assert environment[variable] == "127.0.0.1", f"{name}: {variable}"
    assert "networks" not in yaml.safe_load(rendered) or not any(
        n for n in yaml.safe_load(rendered)["networks"].values() if n.get("driver") == "bridge"
    )
