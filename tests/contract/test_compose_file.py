"""compose.yaml keeps its promises on paper (it runs for real in tests/containers): every
service of the catalogue with its replicas, health check, restart and rolling-update policies,
a read-only root and no privileges; every secret a variable that must be set, handed only to
the processes that use it (the edge policy's signing key to the auth service alone); the
gateway's agent healthy only once it holds a verified policy and endpoints; every address a
variable; each service on its own database as its own runtime role, its schema made first by
its database's owner, no superuser's or owner's password in a service's container; the internal
hops' secret in exactly Envoy, its agent, the federation gateway and the services with a
GraphQL subgraph; the federation gateway on our image, which has the packages its configuration
imports; the gateway on TLS from the certificate and key of two compose secrets, plaintext only
when asked; and Docker Compose itself accepts it with each override (`docker-compose config`).
`make compose-env` writes a matching key pair and the internal token, completes an older env
file without them, and makes a local CA's certificate for the gateway unless it is given one."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from ordermesh.catalogue import Need
from ordermesh.config import ServiceSettings
from ordermesh.deploy import compose, databases
from ordermesh.deploy.compose import gateway as compose_gateway
from ordermesh.gateway.agent import AgentSettings
from ordermesh.policy import EdgePolicy, seal, signing_key, unseal, verify_key

from deploy import images
from deploy.env import (
    POLICY_KEYS,
    POLICY_SIGNING_KEY,
    POLICY_VERIFY_KEY,
    SECRETS,
    STORE_ROLE_PASSWORDS,
    TLS_FILES,
    read,
    write,
)
from deploy.env import main as env_main
from deploy.project import PROJECT
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
    assert spec["healthcheck"]["test"] == ["CMD", "python", "-m", "ordermesh.probe"]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert set(catalogue.CATALOGUE.dependencies(service)) <= set(spec["depends_on"])


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
                == f"${{{POLICY_SIGNING_KEY}:?set it in the env file}}"
            )


def test_the_edge_policy_verify_key_reaches_every_follower_and_no_one_else():
    assert "edge_policy_verify_key" in AgentSettings.model_fields
    assert {"user", "inventory", "order", "notification", "auth"} <= followers()
    for name, spec in BASE["services"].items():
        environment = spec.get("environment", {})
        assert (POLICY_VERIFY_KEY in environment) == (name in followers()), name
        if name in followers():
            assert (
                environment[POLICY_VERIFY_KEY]
                == f"${{{POLICY_VERIFY_KEY}:?set it in the env file}}"
            )


def test_the_gateway_agent_is_healthy_once_ready_and_never_published():
    agent = BASE["services"]["gateway-agent"]
    assert agent["healthcheck"]["test"] == compose_gateway.AGENT_HEALTHCHECK
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
            [sys.executable, "-c", compose_gateway.AGENT_READY],
            env={**os.environ, "PORT": str(port)},
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert (done.returncode == 0) == healthy, done.stderr


def _as_podman_runs(test: list[str]) -> list[str]:
    """The command Podman 4.3 runs for a compose health check it got through its
    Docker-compatible API: the test joined with spaces, split at every space, and a CMD-SHELL
    one's words joined again for `sh -c` (a CMD one's run as split)."""
    kind, *words = " ".join(test).split(" ")
    return ["/bin/sh", "-c", " ".join(words)] if kind == "CMD-SHELL" else words


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_agents_health_check_survives_podmans_api(status, healthy):
    python = Path(sys.executable).parent
    with answering(status) as port:
        done = subprocess.run(
            _as_podman_runs(BASE["services"]["gateway-agent"]["healthcheck"]["test"]),
            env={"PATH": f"{python}:/usr/bin:/bin", "PORT": str(port)},
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert (done.returncode == 0) == healthy, done.stderr


def test_the_health_check_fails_when_nothing_listens():
    with answering(200) as port:
        pass
    done = subprocess.run(
        [sys.executable, "-c", compose_gateway.AGENT_READY],
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
    assert sql == databases.init_sql(PROJECT.stores())
    for service in catalogue.CATALOGUE:
        created = f'CREATE DATABASE "{service.name}" OWNER {service.name}_owner' in sql
        assert created == (Need.STORE in service.needs), service.name


STORES = PROJECT.stores()


def _variables(spec: dict) -> set[str]:
    """The variables a container's environment refers to."""
    return {
        name
        for value in (spec.get("environment") or {}).values()
        for name in re.findall(r"\$\{(\w+)", str(value))
    }


@pytest.mark.parametrize("name", STORES)
def test_each_service_uses_its_own_database_as_its_runtime_role(name):
    runtime = databases.runtime(name)
    password = f"${{{databases.password_variable(runtime)}:?set it in the env file}}"
    expected = f"postgresql://{runtime}:{password}@{compose.POSTGRES}/{name}"
    assert BASE["services"][name]["environment"]["STORE_URL"] == expected
    if name == catalogue.CATALOGUE.issuer.service:
        assert BASE["services"]["create-admin"]["environment"]["STORE_URL"] == expected


@pytest.mark.parametrize("name", STORES)
def test_each_services_schema_is_made_by_its_owner_before_it_starts(name):
    schema = BASE["services"][f"{name}-schema"]
    owner = databases.owner(name)
    assert schema["command"] == ["python", "-m", "services.schema", name]
    assert schema["environment"] == {"STORE_URL": (
        f"postgresql://{owner}:${{{databases.password_variable(owner)}:?set it in the env file}}"
        f"@{compose.POSTGRES}/{name}")}  # fmt: skip
    assert schema["depends_on"] == {
        "postgres-roles": {"condition": "service_completed_successfully"}}  # fmt: skip
    waiting = [name] + (["create-admin"] if name == catalogue.CATALOGUE.issuer.service else [])
    for container in waiting:
        assert BASE["services"][container]["depends_on"][f"{name}-schema"] == {
            "condition": "service_completed_successfully"}  # fmt: skip


def test_the_roles_step_runs_the_roles_script_at_every_up_as_the_superuser():
    roles = BASE["services"]["postgres-roles"]
    assert roles["command"] == ["sh", "-c", databases.ROLES_COMMAND]
    assert roles["volumes"] == ["./deploy/postgres/init.sql:/ordermesh/init.sql:ro"]
    assert roles["environment"]["PGPASSWORD"] == "${POSTGRES_PASSWORD:?set it in the env file}"
    assert _variables(roles) >= set(STORE_ROLE_PASSWORDS)
    assert "restart" not in roles  # a one-shot: `up` runs it again
    # The server runs no script of its own: the roles step brings an older volume up to date.
    assert not [v for v in BASE["services"]["postgres"]["volumes"] if "initdb" in v]


def test_no_superuser_or_owner_password_reaches_a_service():
    """The superuser's password reaches the server and the roles step only; an owner's, the
    roles step and its service's schema step; a runtime role's, the roles step and the
    containers of its service (the issuer's create-admin step too)."""
    readers: dict[str, set[str]] = {}
    for name, spec in BASE["services"].items():
        for variable in _variables(spec):
            readers.setdefault(variable, set()).add(name)
    assert readers["POSTGRES_PASSWORD"] == {"postgres", "postgres-roles"}
    for name in STORES:
        owner, runtime = databases.roles(name)
        assert readers[databases.password_variable(owner)] == {"postgres-roles", f"{name}-schema"}
        users = {name} | ({"create-admin"} if name == catalogue.CATALOGUE.issuer.service else set())
        assert readers[databases.password_variable(runtime)] == {"postgres-roles"} | users


def test_compose_env_adds_the_database_roles_passwords_to_an_older_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    write(path, {})
    older = {k: v for k, v in read(path).items() if k not in STORE_ROLE_PASSWORDS}
    path.write_text("".join(f"{name}={value}\n" for name, value in older.items()))
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(path)])
    assert env_main() == 0
    values = read(path)
    assert {name: values[name] for name in older} == older  # the superuser's kept
    assert set(STORE_ROLE_PASSWORDS) <= set(values)
    assert len({values[name] for name in STORE_ROLE_PASSWORDS}) == len(STORE_ROLE_PASSWORDS)


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


# The internal hops' secret (ordermesh.gateway.envoy's INTERNAL_HEADER).

INTERNAL = "${INTERNAL_TOKEN:?set it in the env file}"
# The agent's other required settings, for checking a token against its own.
AGENT = {"redis_url": "redis://127.0.0.1:1/0", "eds_dir": "eds", "policy_dir": "policy",
         "edge_policy_verify_key": "unused"}  # fmt: skip


def test_the_internal_token_reaches_envoy_its_agent_the_graphql_gateway_subgraphs_and_pages_only():
    """Envoy sends it, the agent writes the subgraph listener's check of it, the federation
    gateway checks and sends it, the services with a GraphQL subgraph or web pages check it
    (the console, the storefront); their one-shot
    steps (create-admin, the schema steps) serve nothing and do not get it."""
    assert "internal_token" in AgentSettings.model_fields
    assert "internal_token" in ServiceSettings.model_fields
    subgraphs = {s.name for s in catalogue.CATALOGUE.graph_services()}
    assert subgraphs == {"user", "inventory", "order"}
    readers = {
        name for name, spec in BASE["services"].items() if "INTERNAL_TOKEN" in _variables(spec)
    }
    pages = {s.name for s in catalogue.CATALOGUE.web_services()}
    assert pages == {"console", "storefront"}  # their pages take the gateway's calls only
    assert readers == {"gateway", "gateway-agent", "graphql"} | subgraphs | pages
    for name in readers:
        assert BASE["services"][name]["environment"]["INTERNAL_TOKEN"] == INTERNAL, name
    assert "INTERNAL_TOKEN" in SECRETS


def test_compose_env_adds_the_internal_token_to_an_older_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    write(path, {})
    older = {k: v for k, v in read(path).items() if k != "INTERNAL_TOKEN"}
    path.write_text("".join(f"{name}={value}\n" for name, value in older.items()))
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(path)])
    assert env_main() == 0
    values = read(path)
    assert {name: values[name] for name in older} == older
    # What the agent and the federation gateway require of it: 16 characters at least.
    AgentSettings.model_validate({**AGENT, "internal_token": values["INTERNAL_TOKEN"]})
    assert len(values["INTERNAL_TOKEN"]) >= 16


# The federation gateway's image.


def test_the_graphql_gateway_runs_our_image_with_no_cors_origin_by_default():
    graphql = BASE["services"]["graphql"]
    assert graphql["image"] == f"${{GRAPHQL_IMAGE:-{images.GRAPHQL}}}"
    assert images.GRAPHQL == "localhost/ordermesh-graphql:latest"
    assert graphql["environment"]["CORS_ORIGINS"] == "${CORS_ORIGINS:-}"
    assert graphql["command"] == ["supergraph", "--config-path", "/gateway/gateway.config.mjs"]
    assert graphql["read_only"] is True
    assert "ports" not in graphql


def test_our_graphql_image_holds_every_package_its_configuration_imports():
    """Hive Gateway's official image has Hive's packages only; ours copies gateway/graphql's
    node_modules, which `npm ci` fills from package.json's dependencies."""
    config = (ROOT / "gateway" / "graphql" / "gateway.config.mjs").read_text()
    imported = {
        "/".join(name.split("/")[: 2 if name.startswith("@") else 1])
        for name in re.findall(r'^import .*? from "([^"]+)";', config, re.MULTILINE | re.DOTALL)
        if not name.startswith(("node:", ".", "/"))
    }
    assert {"@graphql-hive/gateway", "graphql-query-complexity"} <= imported
    manifest = json.loads((ROOT / "gateway" / "graphql" / "package.json").read_text())
    assert imported <= set(manifest["dependencies"])
    containerfile = (ROOT / "deploy" / "images" / "graphql" / "Containerfile").read_text()
    assert "COPY node_modules /gateway/node_modules" in containerfile


def test_make_image_builds_the_graphql_image_on_the_base_users_pull(monkeypatch):
    built: list[tuple[str, str]] = []

    def build(tag: str, context: Path, *, containerfile: Path | None = None, base_image: str):
        built.append((tag, base_image))

    monkeypatch.setattr(images, "wheelhouse", lambda: None)
    monkeypatch.setattr(images, "graphql_packages", lambda: None)
    monkeypatch.setattr(images, "build", build)
    images.build_all(base_image=images.USER_BASE, infrastructure=False)
    assert built == [(images.APP, images.USER_BASE), (images.GRAPHQL, images.USER_BASE)]
    assert not images.USER_BASE.startswith("localhost/")  # pulled from a registry


# TLS at the gateway.


def _run_gateway_config(tmp_path: Path, **env: str) -> list[str]:
    """The arguments compose's `gateway-config` command gives ordermesh.gateway.envoy (`$$` is `$`
    once compose has read the file), with `python` a stub that prints them."""
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    shell, flag, script = BASE["services"]["gateway-config"]["command"]
    done = subprocess.run(
        [shell, flag, script.replace("$$", "$")],
        env={"PATH": f"{stub.parent}:/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


@pytest.mark.parametrize("plaintext", ["", "0"])
def test_the_gateway_serves_tls_with_the_secrets_files(tmp_path, plaintext):
    args = _run_gateway_config(tmp_path, GATEWAY_PLAINTEXT=plaintext)
    assert args[:3] == ["-m", "ordermesh.gateway.envoy", "-o"]
    cert, key = (f"{compose.SECRETS_DIR}/{name}" for name in compose.TLS_SECRETS)
    assert args[args.index("--tls-cert") + 1] == cert
    assert args[args.index("--tls-key") + 1] == key
    assert "--plaintext" not in args
    # Those files are the secrets, mounted in Envoy's container only.
    gateway = BASE["services"]["gateway"]
    assert (
        gateway["secrets"] == list(compose.TLS_SECRETS) == ["gateway-tls-cert", "gateway-tls-key"]
    )
    # The console and the storefront, the gateway's clients inside compose, hold the CA they
    # verify it with.
    holders = {
        name: spec["secrets"] for name, spec in BASE["services"].items() if "secrets" in spec
    }
    assert holders == {
        "gateway": list(compose.TLS_SECRETS),
        "console": ["gateway-ca"],
        "storefront": ["gateway-ca"],
    }
    assert BASE["secrets"] == {
        "gateway-tls-cert": {"file": "${GATEWAY_TLS_CERT:-./.build/tls/gateway.crt}"},
        "gateway-tls-key": {"file": "${GATEWAY_TLS_KEY:-./.build/tls/gateway.key}"},
        "gateway-ca": {"file": "${GATEWAY_TLS_CA:-./.build/tls/ca.crt}"},
    }
    assert BASE["services"]["gateway-config"]["environment"]["GATEWAY_PLAINTEXT"] == (
        "${GATEWAY_PLAINTEXT:-}")  # fmt: skip


def test_the_gateway_serves_plaintext_only_when_asked(tmp_path):
    args = _run_gateway_config(tmp_path, GATEWAY_PLAINTEXT="1")
    assert "--plaintext" in args
    assert "--tls-cert" not in args
    assert "--tls-key" not in args


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_compose_env_makes_a_local_ca_certificate_for_the_gateway_once(
    tmp_path, monkeypatch, capsys
):
    env = tmp_path / ".env"
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(env)])
    assert env_main() == 0
    tls = tmp_path / ".build" / "tls"  # where compose.yaml's secrets look by default
    certificate, key, ca = tls / "gateway.crt", tls / "gateway.key", tls / "ca.crt"
    _certificate(certificate).verify_directly_issued_by(_certificate(ca))
    names = _certificate(certificate).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value  # fmt: skip
    assert {"localhost", "gateway"} <= set(names.get_values_for_type(x509.DNSName))
    assert "127.0.0.1" in {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key)  # they match
    # Readable by Envoy's user in its container; no other local user opens the directory.
    assert tls.stat().st_mode & 0o777 == 0o700
    assert key.stat().st_mode & 0o777 == 0o644
    assert (tls / "ca.key").stat().st_mode & 0o777 == 0o600
    assert f"--cacert {ca}" in capsys.readouterr().out
    before = certificate.read_bytes()
    assert env_main() == 0
    assert certificate.read_bytes() == before  # kept: clients trust its CA already


def test_compose_env_makes_none_when_given_the_gateways_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "site.crt").write_text("a certificate")
    (tmp_path / "site.key").write_text("its key")
    (tmp_path / "site-ca.crt").write_text("the CA that issued it")
    env = tmp_path / ".env"
    given = ["GATEWAY_TLS_CERT=site.crt", "GATEWAY_TLS_KEY=site.key", "GATEWAY_TLS_CA=site-ca.crt"]
    monkeypatch.setattr(sys, "argv", ["deploy.env", "-o", str(env), *given])
    assert env_main() == 0
    assert not (tmp_path / ".build").exists()
    assert "site.crt" in capsys.readouterr().out


@pytest.mark.parametrize("given", TLS_FILES)
def test_compose_env_refuses_half_of_the_gateways_files(tmp_path, monkeypatch, capsys, given):
    (tmp_path / "site.pem").write_text("a file")
    monkeypatch.setattr(
        sys, "argv", ["deploy.env", "-o", str(tmp_path / ".env"), f"{given}=site.pem"]
    )
    assert env_main() == 1
    other = next(name for name in TLS_FILES if name != given)
    assert other in capsys.readouterr().err
    assert not (tmp_path / ".build").exists()


def test_compose_env_refuses_a_gateway_file_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [
        "deploy.env", "-o", str(tmp_path / ".env"), "GATEWAY_TLS_CERT=missing.crt",
        "GATEWAY_TLS_KEY=missing.key"])  # fmt: skip
    assert env_main() == 1
    assert "missing.crt" in capsys.readouterr().err
