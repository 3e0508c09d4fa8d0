"""The GraphQL supergraph: composed from the services' subgraphs (what `make gen` commits), and
the gate `make lint` runs on it, which refuses what breaks a client and lets additions through."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools.supergraph import BREAKING, SUPERGRAPH, subgraph_sdls


def breaks(earlier: str, later: str, tmp_path: Path) -> tuple[bool, str]:
    (tmp_path / "earlier.graphql").write_text(earlier)
    (tmp_path / "later.graphql").write_text(later)
    found = subprocess.run(
        ["node", str(BREAKING), str(tmp_path / "earlier.graphql"), str(tmp_path / "later.graphql")],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.returncode != 0, found.stdout


def test_every_subgraph_declares_its_entities_with_the_contracts_keys():
    sdls = subgraph_sdls()
    assert set(sdls) == {"user", "inventory", "order"}
    assert 'type User @key(fields: "userId")' in sdls["user"]
    assert 'type Product @key(fields: "productId")' in sdls["inventory"]
    assert 'type Order @key(fields: "orderId")' in sdls["order"]


def test_the_gate_refuses_a_removed_field_and_passes_an_added_one(tmp_path):
    served = SUPERGRAPH.read_text()
    assert "  sku: String! @join__field(graph: INVENTORY)\n" in served

    removed = served.replace("  sku: String! @join__field(graph: INVENTORY)\n", "")
    broken, report = breaks(served, removed, tmp_path)
    assert broken
    assert "Product.sku was removed" in report

    sku = "  sku: String! @join__field(graph: INVENTORY)\n"
    added = served.replace(sku, sku + "  gtin: String @join__field(graph: INVENTORY)\n")
    assert breaks(served, added, tmp_path) == (False, "")
