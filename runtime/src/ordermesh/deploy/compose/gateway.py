"""compose.yaml's gateway: the one-shot that renders Envoy's bootstrap into the gateway's volume
(ordermesh.gateway.envoy), the agent beside Envoy (ordermesh.gateway.agent: its endpoints and
edge policy from the registry), the federation gateway behind /graphql if the project has one,
and Envoy, serving HTTPS and gRPC over TLS with the compose secrets TLS_SECRETS (or plaintext
with GATEWAY_PLAINTEXT=1)."""

from __future__ import annotations

from typing import Any

from ordermesh.deploy import facts
from ordermesh.deploy.compose import (
    GATEWAY_AGENT_PORT,
    GATEWAY_PORT,
    GRAPHQL_PORT,
    SECRETS_DIR,
    SUBGRAPHS_PORT,
    TARGET,
    TLS_SECRETS,
    app,
    overridable,
)
from ordermesh.deploy.environment import agent_environment, internal_hops
from ordermesh.deploy.project import Federation, Project

__all__ = ["AGENT_HEALTHCHECK", "AGENT_READY", "GATEWAY_DIR", "TLS_ARGUMENTS", "gateway"]

# The volume the gateway's bootstrap, contracts, EDS and policy files share.
GATEWAY_DIR = "/gateway"
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


def _gateway_config(project: Project) -> dict[str, Any]:
    """The one-shot that renders Envoy's bootstrap (ordermesh.gateway.envoy) into the
    gateway's volume, with /graphql sent to the federation gateway if the project has one."""
    command = (
        TLS_ARGUMENTS + f"exec python -m ordermesh.gateway.envoy -o {GATEWAY_DIR}/envoy.json "
        f"--catalogue {project.catalogue_at} "
        '--host "$$GATEWAY_LISTEN" --port "$$GATEWAY_PORT" '
        f"--eds-dir {GATEWAY_DIR}/eds --policy-dir {GATEWAY_DIR}/policy "
        f"--descriptor-set {GATEWAY_DIR}/descriptors.pb "
        '--admin-port "$$GATEWAY_ADMIN_PORT" '
    )
    environment = {
        "GATEWAY_PLAINTEXT": "${GATEWAY_PLAINTEXT:-}",
        "GATEWAY_LISTEN": "${GATEWAY_LISTEN:-0.0.0.0}",
        "GATEWAY_PORT": GATEWAY_PORT,
        "GATEWAY_ADMIN_PORT": overridable("GATEWAY_ADMIN_PORT", facts.GATEWAY_ADMIN_PORT),
    }
    if project.federation is not None:
        command += (
            '--graphql-address "$$GRAPHQL_ADDRESS" '
            '--subgraphs-host "$$GATEWAY_LISTEN" --subgraphs-port "$$SUBGRAPHS_PORT" '
        )
        environment |= {
            "GRAPHQL_ADDRESS": f"${{GRAPHQL_HOST:-graphql}}:{GRAPHQL_PORT}",
            "SUBGRAPHS_PORT": SUBGRAPHS_PORT,
        }
    else:
        command += "--graphql-address '' "  # no /graphql
    return app(
        project,
        ["sh", "-c", command + "$$tls --prepare"],
        environment=environment,
        volumes=[f"gateway:{GATEWAY_DIR}"],
        restart="on-failure",
    )


def _federation(federation: Federation) -> dict[str, Any]:
    """The GraphQL federation gateway behind Envoy's /graphql (the project's `Federation`):
    its image of Hive Gateway, with the configuration and the supergraph of its directory.
    CORS_ORIGINS: the web origins allowed (none by default)."""
    return {
        "image": overridable("GRAPHQL_IMAGE", federation.local_image()),
        "command": ["supergraph", "--config-path", f"/gateway/{federation.config}"],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "environment": {
            "HOST": "${GRAPHQL_LISTEN:-0.0.0.0}",
            "PORT": GRAPHQL_PORT,
            "SUBGRAPHS_URL": f"http://${{GATEWAY_HOST:-gateway}}:{SUBGRAPHS_PORT}",
            "CORS_ORIGINS": "${CORS_ORIGINS:-}",
            **internal_hops(TARGET),
            "LOG_JSON": "1",
        },
        "volumes": [
            f"./{federation.directory}/{name}:/gateway/{name}:ro" for name in federation.files
        ],
        "restart": "unless-stopped",
    }


def gateway(project: Project) -> dict[str, Any]:
    rendered = {
        "gateway-config": _gateway_config(project),
        "gateway-agent": app(
            project,
            ["python", "-m", "ordermesh.gateway.agent"],
            environment={
                **agent_environment(
                    TARGET,
                    eds_dir=f"{GATEWAY_DIR}/eds",
                    policy_dir=f"{GATEWAY_DIR}/policy",
                    catalogue_at=project.catalogue_at,
                ),
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
    }
    if project.federation is not None:
        rendered["graphql"] = _federation(project.federation)
    rendered["gateway"] = {
        "image": overridable("ENVOY_IMAGE", facts.ENVOY_IMAGE),
        "command": ["envoy", "-c", f"{GATEWAY_DIR}/envoy.json", "--log-level", "warn"],
        # Envoy adds it to the calls of /graphql and of the subgraph listener's routes.
        "environment": internal_hops(TARGET),
        "volumes": [f"gateway:{GATEWAY_DIR}:ro"],
        "secrets": list(TLS_SECRETS),
        "ports": [
            f"{overridable('GATEWAY_PUBLISH', f'127.0.0.1:{facts.GATEWAY_PORT}')}:" + GATEWAY_PORT
        ],
        "restart": "unless-stopped",
        "depends_on": {
            "gateway-config": {"condition": "service_completed_successfully"},
            "gateway-agent": {"condition": "service_started"},
        },
    }
    return rendered
