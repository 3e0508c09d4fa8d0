"""The auth service's collections: the edge policy's durable home (services.auth.service)."""

from ordermesh.store import Collection

# Session id -> {"until": when its last access token expires}.
REVOKED = Collection("revoked_sessions")
# CURRENT -> {"version": n, "jwks": the key set or None}.
POLICY = Collection("edge_policy")
CURRENT = "current"

COLLECTIONS = (REVOKED, POLICY)
