"""The example's gateway: Envoy's configuration generated from the contracts (what they say of
each RPC: ordermesh.gateway.contracts), and the agent that feeds it."""

from pathlib import Path

__all__ = ["DESCRIPTOR_SET", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent
# The descriptor set of every contract, with its imports, that `make gen` writes
# (tools/contracts.py).
DESCRIPTOR_SET = ROOT / "gen" / "descriptors.pb"
