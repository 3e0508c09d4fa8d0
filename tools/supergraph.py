"""The GraphQL supergraph, composed offline from the services' subgraphs (never by hand):

    python -m tools.supergraph -o gateway/graphql/supergraph.graphql    (run by `make gen`)

Each service the catalogue marks `graph` gives its subgraph's SDL (`services.<name>.graph`,
with its Federation v2 directives); The Guild's composition (tools/node/compose-supergraph.mjs)
checks that they compose and writes the supergraph the Hive Gateway serves (gateway/graphql).
A subgraph that no longer composes with the others fails `make gen`, naming the conflict.

The supergraph names each subgraph's URL at the gateway's subgraph listener (Envoy, which
balances and health-checks the instances: gateway.config) as compose.yaml runs it; the Hive
Gateway's configuration points them at SUBGRAPHS_URL, so `make up` and the tests run theirs
on ports of their own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.config import SUBGRAPHS_PORT, subgraph_path
from services.catalogue import graph_services

__all__ = ["subgraph_sdls", "supergraph"]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "tools" / "node" / "compose-supergraph.mjs"


def subgraph_sdls() -> dict[str, str]:
    """Each subgraph's SDL, by service. Only the schema is built: no resolver runs, so the
    subgraph is given no use cases."""
    found = {}
    for service in graph_services():
        graph: Any = importlib.import_module(f"{service.module}.graph")
        found[service.name] = graph.subgraph(None).sdl()
    return found


def supergraph(base_url: str = f"http://127.0.0.1:{SUBGRAPHS_PORT}") -> str:
    """The composed supergraph's SDL; RuntimeError with the composition's errors."""
    subgraphs = [
        {"name": name, "url": base_url + subgraph_path(name), "sdl": sdl}
        for name, sdl in subgraph_sdls().items()
    ]
    composed = subprocess.run(
        ["node", str(COMPOSE)],
        input=json.dumps(subgraphs),
        capture_output=True,
        text=True,
        check=False,
    )
    if composed.returncode != 0:
        raise RuntimeError(f"the subgraphs do not compose:\n{composed.stderr.strip()}")
    return composed.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    try:
        composed = supergraph()
    except RuntimeError as exc:
        sys.exit(str(exc))
    header = (
        "# Generated from the services' subgraphs by `make gen` (tools/supergraph.py): "
        "do not edit.\n"
    )
    args.output.write_text(header + composed)


if __name__ == "__main__":
    main()
