"""compose.yaml keeps its promises on paper (it runs for real in tests/containers): every
service of the catalogue with its replicas, health check, restart and rolling-update policies,
a read-only root and no privileges; every secret a variable that must be set, handed only to
the processes that use it (the edge policy's signing key to the auth service alone); the
gateway's agent healthy only once it holds a verified policy and endpoints; every address a
variable; and Docker Compose itself accepts it with each override (`docker-compose config`).
`make compose-env` writes a matching key pair, and completes an older env file without one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from chassis.policy import EdgePolicy, seal, signing_key, unseal, verify_key
from deploy import compose
from deploy.env import POLICY_KEYS, POLICY_SIGNING_KEY, POLICY_VERIFY_KEY, SECRETS, read, write
from deploy.env import main as env_main
from gateway.agent import AgentSettings
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
    for secret in (*SECRETS, *POLICY_KEYS):
        assert f"${{{secret}:?" in text, f"{secret} is not required"
    for name, spec in BASE["services"].items():
        for variable, value in spec.get("environment", {}).items():
            if any(word in variable for word in ("PASSWORD", "PASS", "KEY", "TOKEN")):
                assert str(value).startswith("${"), f"{name}: {variable} has a literal value"


def followers() -> set[str]:
    """The containers that enforce the edge policy: every service whose settings take its
    public key, the issuer's create-admin step (the user service's settings), the agent."""
    found = {
        s.name for s in catalogue.CATALOGUE if "edge_policy_verify_key" in s.settings.model_fields
    }
    return found | {"create-admin", "gateway-agent"}


def test_the_edge_policy_signing_key_reaches_the_auth_service_only():
    signers = {
        s.name for s in catalogue.CATALOGUE if "edge_policy_signing_key" in s.settings.model_fields
    }
    assert signers == {"auth"}
    for name, spec in BASE["services"].items():
        environment = spec.get("environment", {})
        assert (POLICY_SIGNING_KEY in environment) == (name in signers), name
        if name in signers:
            assert (
                environment[POLICY_SIGNING_KEY]
                == f"${{{POLICY_SIGNING_KEY}:?run make compose-env}}"
            )


def test_the_edge_policy_verify_key_reaches_every_follower_and_no_one_else():
    assert "edge_policy_verify_key" in AgentSettings.model_fields
    assert {"user", "inventory", "order", "notification", "auth"} <= followers()
    for name, spec in BASE["services"].items():
        environment = spec.get("environment", {})
        assert (POLICY_VERIFY_KEY in environment) == (name in followers()), name
        if name in followers():
            assert (
                environment[POLICY_VERIFY_KEY] == f"${{{POLICY_VERIFY_KEY}:?run make compose-env}}"
            )


def test_the_gateway_agent_is_healthy_once_ready_and_never_published():
    agent = BASE["services"]["gateway-agent"]
    assert agent["healthcheck"]["test"] == ["CMD", "python", "-c", compose.AGENT_READY]
    assert (
        agent["environment"]["PORT"] == compose.GATEWAY_AGENT_PORT == "${GATEWAY_AGENT_PORT:-9902}"
    )
    assert "ports" not in agent
    targets = BASE["services"]["prometheus-targets"]["environment"]
    assert targets["GATEWAY_AGENT"] == "${GATEWAY_AGENT_TARGET:-gateway-agent:9902}"


@contextmanager
def answering(status: int) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers `status` to GET /ready (404 elsewhere)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_agents_health_check_passes_only_when_ready_answers_200(status, healthy):
    with answering(status) as port:
        done = subprocess.run(
            [sys.executable, "-c", compose.AGENT_READY],
            env={**os.environ, "PORT": str(port)},
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert (done.returncode == 0) == healthy, done.stderr


def test_the_health_check_fails_when_nothing_listens():
    with answering(200) as port:
        pass
    done = subprocess.run(
        [sys.executable, "-c", compose.AGENT_READY],
        env={**os.environ, "PORT": str(port)},
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0


def _signs_and_verifies(values: dict[str, str]) -> bool:
    policy = EdgePolicy(version=1, issued_at=1.0, jwks={"keys": []})
    sealed = seal(policy, signing_key(values[POLICY_SIGNING_KEY]))
    return unseal(sealed, verify_key(values[POLICY_VERIFY_KEY])) == policy


def test_compose_env_writes_a_matching_edge_policy_key_pair(tmp_path):
    write(tmp_path / ".env", {})
    values = read(tmp_path / ".env")
    assert set(SECRETS) | set(POLICY_KEYS) <= set(values)
    assert _signs_and_verifies(values)
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600


def test_compose_env_adds_the_key_pair_to_an_older_file_and_keeps_what_it_holds(
    tmp_path, monkeypatch
):
    path = tmp_path / ".env"
    old = {name: f"old-{name.lower()}" for name in SECRETS}
    path.write_text("# an env file from before the edge policy was signed\n" + "".join(
        f"{name}={value}\n" for name, value in old.items()))  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(path)])
    assert env_main() == 0
    values = read(path)
    assert {name: values[name] for name in SECRETS} == old
    assert _signs_and_verifies(values)
    assert env_main() == 0
    assert read(path) == values  # nothing more to add: kept as it is


@pytest.mark.parametrize("kept", POLICY_KEYS)
def test_compose_env_refuses_a_file_with_half_of_the_key_pair(tmp_path, monkeypatch, capsys, kept):
    path = tmp_path / ".env"
    write(path, {})
    text = path.read_text()
    other = next(name for name in POLICY_KEYS if name != kept)
    path.write_text(
        "".join(line + "\n" for line in text.splitlines() if not line.startswith(other))
    )
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(path)])
    before = path.read_text()
    assert env_main() == 1
    assert kept in capsys.readouterr().err
    assert path.read_text() == before


def test_compose_env_refuses_a_key_pair_that_does_not_match(tmp_path, monkeypatch, capsys):
    path = tmp_path / ".env"
    write(path, {})
    stranger = tmp_path / "other.env"
    write(stranger, {})
    values = read(path) | {POLICY_VERIFY_KEY: read(stranger)[POLICY_VERIFY_KEY]}
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(path)])
    assert env_main() == 1
    assert "not the public half" in capsys.readouterr().err


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
        for variable in ("GRPC_HOST", "GATEWAY_LISTEN", "REDIS_LISTEN", "HOST"):
            if variable in environment:
                assert environment[variable] == "127.0.0.1", f"{name}: {variable}"
    assert "networks" not in yaml.safe_load(rendered) or not any(
        n for n in yaml.safe_load(rendered)["networks"].values() if n.get("driver") == "bridge"
    )
