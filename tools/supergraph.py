"""The GraphQL supergraph, composed offline from the services' subgraphs (never by hand):

    python -m tools.supergraph -o gateway/graphql/supergraph.graphql    (run by `make gen`)

Each service the catalogue marks `graph` gives its subgraph's SDL (`services.<name>.graph`,
with its Federation v2 directives); The Guild's composition (tools/node/compose-supergraph.mjs)
checks that they compose and writes the supergraph the Hive Gateway serves (gateway/graphql).
A subgraph that no longer composes with the others fails `make gen`, naming the conflict;
`python -m tools.supergraph --breaking` (run by `make lint`) fails on a change that breaks
what the schema served before (docs/versioning.md).

The supergraph names each subgraph's URL at the gateway's subgraph listener (Envoy, which
balances and health-checks the instances: ordermesh.gateway.envoy) as compose.yaml runs it; the Hive
Gateway's configuration points them at SUBGRAPHS_URL, so `make up` and the tests run theirs
on ports of their own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ordermesh.gateway.envoy import SUBGRAPHS_PORT, subgraph_path

from services.catalogue import CATALOGUE

__all__ = ["subgraph_sdls", "supergraph"]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "tools" / "node" / "compose-supergraph.mjs"
BREAKING = ROOT / "tools" / "node" / "graphql-breaking.mjs"
SUPERGRAPH = ROOT / "gateway" / "graphql" / "supergraph.graphql"


def subgraph_sdls() -> dict[str, str]:
    """Each subgraph's SDL, by service. Only the schema is built: no resolver runs, so the
    subgraph is given no use cases."""
    found = {}
    for service in CATALOGUE.graph_services():
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


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def breaking(path: Path = SUPERGRAPH) -> int:
    """Fails if a commit that changed the supergraph broke what its parent served (removed or
    retyped a field, made an argument required, ...: tools/node/graphql-breaking.mjs), or the
    working tree breaks HEAD's; as `make lint` runs buf breaking on the contracts.
    GRAPHQL_BREAKING_AGAINST=<commit> starts from that commit instead of the first."""
    relative = str(path.relative_to(ROOT))
    since = os.environ.get("GRAPHQL_BREAKING_AGAINST")
    commits = _git("rev-list", "--reverse", f"{since}..HEAD" if since else "HEAD", "--", relative)

    def version(rev: str) -> str | None:
        found = subprocess.run(
            ["git", "show", f"{rev}:{relative}"], cwd=ROOT, capture_output=True, text=True
        )
        return found.stdout if found.returncode == 0 else None

    comparisons = [(f"commit {c[:12]}", version(f"{c}~1"), version(c)) for c in commits.split()]
    comparisons.append(("the working tree", version("HEAD"), path.read_text()))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (where, earlier, later) in enumerate(comparisons):
            if earlier is None or later is None or earlier == later:
                continue
            files = [Path(tmp) / f"{n}-{side}.graphql" for side in ("earlier", "later")]
            for file, text in zip(files, (earlier, later), strict=True):
                file.write_text(text)
            found = subprocess.run(
                ["node", str(BREAKING), *map(str, files)], capture_output=True, text=True
            )
            if found.returncode != 0:
                failed += 1
                print(f"breaking: {where} breaks the GraphQL schema:\n{found.stdout}", end="")
    print(f"graphql breaking: {len(comparisons)} comparison(s), {failed or 'no'} broken")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--breaking", action="store_true", help="check it broke nothing")
    args = parser.parse_args()
    if args.breaking:
        sys.exit(breaking())
    if args.output is None:
        parser.error("-o is required")
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
