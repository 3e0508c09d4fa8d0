"""The events the auth service follows: sessions ended (the token issuer's `revocations`, a
message with `session_id` and `expire_time`: ordermesh.tokens.KeyIssuer), into the edge policy.

One durable queue shared by the auth instances: a revocation made while every instance is
down waits there, and takes effect when one returns. It is recorded in the store in the
consumer's transaction (applied once), then published (ordermesh.gateway.auth.service).
"""

from __future__ import annotations

from typing import Any, cast

from ordermesh.consumer import Handler
from ordermesh.events import Envelope, Message
from ordermesh.gateway.auth.service import EdgePolicyKeeper
from ordermesh.gateway.envoy.names import AUTH_CLUSTER
from ordermesh.store import Transaction
from ordermesh.tokens import KeyIssuer
from ordermesh.topology import Subscription

__all__ = ["handlers", "sessions"]


def sessions(issuer: KeyIssuer) -> Subscription:
    """The auth service's subscription to the sessions `issuer` ends (it has none if the issuer
    names no `revocations`)."""
    return Subscription(service=AUTH_CLUSTER, purpose="sessions", types=list(issuer.revocations))


def handlers(issuer: KeyIssuer, policy: EdgePolicyKeeper) -> dict[type[Message], Handler]:
    async def revoked(event: Any, _: Envelope, tx: Transaction) -> None:
        await policy.revoke(tx, event.session_id, event.expire_time.ToSeconds())

    return {revocation: cast(Handler, revoked) for revocation in issuer.revocations}
