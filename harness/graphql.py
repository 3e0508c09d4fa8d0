"""The GraphQL federation gateway as a local process: Hive Gateway on the Node 20 that
gateway/graphql installs (`make` runs `npm ci` there), serving the committed supergraph with
gateway/graphql/gateway.config.mjs, on 127.0.0.1:`port` (a free one if 0), calling the
subgraphs through Envoy's subgraph listener at `subgraphs_url`; `env` adds to its settings
(CORS_ORIGINS, the MAX_* limits, LOG_LEVEL: gateway.config.mjs lists them)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

from harness.process import ManagedProcess, answers_ok, free_port

__all__ = ["GRAPHQL_DIR", "PrivateGraphqlGateway", "node_binary"]

GRAPHQL_DIR = Path(__file__).resolve().parent.parent / "gateway" / "graphql"


def node_binary() -> Path:
    """gateway/graphql's own Node (the npm package node-linux-<arch>: Debian 12's is 18, and
    Hive Gateway needs 20)."""
    node = GRAPHQL_DIR / "node_modules" / ".bin" / "node"
    if not node.exists():
        raise FileNotFoundError(f"no {node}: run `npm ci --prefix {GRAPHQL_DIR}` (make does)")
    return node


class PrivateGraphqlGateway:
    def __init__(
        self,
        directory: Path,
        *,
        subgraphs_url: str,
        port: int = 0,
        env: Mapping[str, str] | None = None,
    ):
        self.port = port or free_port()
        self.process = ManagedProcess(
            "graphql",
            [
                str(node_binary()),
                str(GRAPHQL_DIR / "node_modules" / "@graphql-hive" / "gateway" / "dist" / "bin.js"),
                "supergraph",
                "--config-path",
                str(GRAPHQL_DIR / "gateway.config.mjs"),
            ],
            directory=directory,
            env={
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "SUBGRAPHS_URL": subgraphs_url,
                "LOG_JSON": "1",  # its first lines too, before the configuration's logger
                **(env or {}),
            },
            ready=partial(answers_ok, f"http://127.0.0.1:{self.port}/readiness"),
            ready_timeout_s=60.0,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def stop(self) -> None:
        self.process.stop()
