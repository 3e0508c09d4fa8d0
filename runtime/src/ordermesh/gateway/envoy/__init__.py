"""The gateway's Envoy configuration, generated from the contracts (never written by hand).

What the contracts decide, read from the descriptor set `make gen` builds (gen/descriptors.pb,
gateway.contracts), one module per Envoy concept:
- which RPCs are routable from outside: those whose `(common.v1.access)` is PUBLIC,
  AUTHENTICATED or ADMIN; INTERNAL ones and ones declaring no level are not routed, and
  neither is anything else (health, reflection, unknown paths): 404 (`routes`, `bootstrap`);
- the REST API: every RPC with a `google.api.http` rule, transcoded to gRPC by Envoy's
  grpc_json_transcoder (`routes`), with errors as JSON bodies carrying the gRPC status and
  message (`replies`);
- which calls Envoy may retry (`retries`): every call when the request never reached an
  instance (connection failure, refused stream); reads (HTTP GET rules) and the writes a
  service deduplicates (their request carries an `idempotency_key`, which the service
  requires) also on UNAVAILABLE or a reset, as when the instance died during the call;
- how often (`limits`): a local token bucket per gateway as a floor, then global limits shared
  by every gateway (sign-in attempts per client address, writes per user and per address),
  counted by the rate-limit service, failing open;
- who may call, decided in Envoy without a hop (docs/decisions.md, "Edge auth"; `access`): on
  AUTHENTICATED and ADMIN routes the bearer token is verified by jwt_authn (EdDSA keys only,
  issuer, audience and expiry required, a maximum lifetime, verified tokens cached), then its
  session is looked up in the revoked sessions (an RBAC hash lookup), then on ADMIN routes
  the verified roles must hold "admin" (RBAC on the token's claims); the key set and the
  revoked sessions are ECDS files (`ecds`) the gateway's agent keeps in step with the auth
  service's policy (ordermesh.policy), applied without a restart. RPCs whose contract asks for
  `(common.v1.policy_check)` are also checked by the auth service on every call (ext_authz),
  failing closed (503). Clients' copies of the headers Envoy writes from a verified token
  are removed first;
- what callers of a deprecated API are told: its `(common.v1.api_lifecycle)` puts the
  Deprecation and Sunset headers in every answer of its routes (ordermesh.lifecycle; `routes`);
- the upstream clusters (`clusters`): one per service (the package's first part: `order.v1`
  -> `order`), its endpoints from the registry through file-based EDS (`ordermesh.gateway.agent`
  writes the files), health-checked over gRPC health, with outlier detection;
- GraphQL, with `graphql_address` (`graphql`): `/graphql` to the federation gateway
  (gateway/graphql), with the edge auth and read limits of REST and GraphQL-shaped refusals,
  and a subgraph listener through which it calls each service's subgraph (a `<service>-graph`
  cluster of the instances' HTTP servers), counting mutations against the global write limits;
- the fault switches at the gateway (`faults`): Envoy's fault filter, delaying or aborting a
  share of a service's calls while `gateway-latency` or `gateway-aborts` is on, ECDS files the
  agent rewrites from the fault switches' flag file.

The names every part shares are in `names`, the settings (`GatewayConfig`) in `config`, the
listeners and tracing in `listeners`; `bootstrap` composes them. Submodules import their
siblings, never this package; this package re-exports what is used outside it.
"""

from __future__ import annotations

from ordermesh.gateway.envoy.bootstrap import bootstrap
from ordermesh.gateway.envoy.clusters import clusters_of
from ordermesh.gateway.envoy.config import GatewayConfig, UpstreamTls, eds_path, policy_paths
from ordermesh.gateway.envoy.ecds import internal_hop_config, jwt_authn_config, revocations_config
from ordermesh.gateway.envoy.faults import fault_config, fault_paths
from ordermesh.gateway.envoy.names import (
    SESSION_HEADER,
    SUBGRAPHS_PORT,
    USER_HEADER,
    graph_cluster,
    graph_clusters,
    subgraph_path,
)

__all__ = [
    "SESSION_HEADER",
    "SUBGRAPHS_PORT",
    "USER_HEADER",
    "GatewayConfig",
    "UpstreamTls",
    "bootstrap",
    "clusters_of",
    "eds_path",
    "fault_config",
    "fault_paths",
    "graph_cluster",
    "graph_clusters",
    "internal_hop_config",
    "jwt_authn_config",
    "policy_paths",
    "revocations_config",
    "subgraph_path",
]
