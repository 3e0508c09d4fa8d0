"""The auth service's collections: the edge policy's durable home
(ordermesh.gateway.auth.service)."""

from ordermesh.store import Collection

__all__ = ["COLLECTIONS", "CURRENT", "POLICY", "REVOKED"]

# Session id -> {"until": when its last access token expires}.
REVOKED = Collection("revoked_sessions")
# CURRENT -> {"version": n, "jwks": the key set or None}.
POLICY = Collection("edge_policy")
CURRENT = "current"

COLLECTIONS = (REVOKED, POLICY)
