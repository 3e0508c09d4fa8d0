"""The Secrets the manifests read, created by the operator (docs/kubernetes.md lists them):
referred to by name and key, never written here."""

from __future__ import annotations

from typing import Any

__all__ = [
    "GATEWAY_CLIENT_TLS_SECRET",
    "GATEWAY_TLS_SECRET",
    "INTERNAL_SECRET",
    "NOTIFICATION_SECRET",
    "POLICY_SIGNING_SECRET",
    "POLICY_VERIFY_SECRET",
    "POSTGRES_ROLES_SECRET",
    "POSTGRES_SECRET",
    "RABBITMQ_SECRET",
    "REDIS_SECRET",
    "STORE_OWNER_SECRET",
    "STORE_SECRET",
    "grpc_tls_secret",
    "secret_ref",
]

# The Secrets the manifests read (created by the operator, docs/kubernetes.md).
RABBITMQ_SECRET = "ordermesh-rabbitmq"  # password, erlang-cookie


REDIS_SECRET = "ordermesh-redis"  # password


STORE_SECRET = "ordermesh-store"  # one key per service that keeps state: its runtime role's URL


# One key per service that keeps state: its database owner's URL, for the schema step only.
STORE_OWNER_SECRET = "ordermesh-store-owner"


NOTIFICATION_SECRET = "ordermesh-notification"  # SMTP_HOST, SMTP_PORT, ... (its settings)


POSTGRES_SECRET = "ordermesh-postgres"  # password (dev's own PostgreSQL's superuser)


# One key per role of each database (`order_owner`, `order_runtime`, ...): its password, for
# dev's `postgres-roles` Job (the same passwords as in the URLs above).
POSTGRES_ROLES_SECRET = "ordermesh-postgres-roles"


# The edge policy's key pair (ordermesh.policy), in two Secrets: the public half for every
# follower, the private half for its signer alone (an object RBAC can keep from the others).
POLICY_VERIFY_SECRET = "ordermesh-edge-policy"  # verify-key


POLICY_SIGNING_SECRET = "ordermesh-edge-policy-signing"  # signing-key


# The secret of the internal hops (ordermesh.gateway.envoy's INTERNAL_HEADER), 16 characters at
# least.
INTERNAL_SECRET = "ordermesh-internal"  # token


# The gateway's certificate chain and key (type kubernetes.io/tls: tls.crt, tls.key), mounted
# into Envoy's container at GATEWAY_TLS_DIR, where the bootstrap names them.
GATEWAY_TLS_SECRET = "ordermesh-gateway-tls"
# Mutual TLS on the gRPC hops inside the cluster (ordermesh.tls), in prod: each service's pods
# mount a Secret of their own (`grpc_tls_secret`), Envoy a client certificate's; both of type
# kubernetes.io/tls with the keys cert-manager writes (tls.crt, tls.key, ca.crt).
GATEWAY_CLIENT_TLS_SECRET = "ordermesh-gateway-client-tls"


def grpc_tls_secret(service: str) -> str:
    """The Secret of `service`'s certificate (naming it: DNS SAN `<service>`), key and CA."""
    return f"ordermesh-{service}-tls"


def secret_ref(name: str, key: str) -> dict[str, Any]:
    return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
