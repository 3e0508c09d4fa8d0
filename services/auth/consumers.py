"""The events the auth service follows: sessions ended (SessionRevoked), into the edge policy.

One durable queue shared by the auth instances: a revocation made while every instance is
down waits there, and takes effect when one returns. It is recorded in the store in the
consumer's transaction (applied once), then published (services.auth.service).
"""

from __future__ import annotations

from typing import cast

from ordermesh.consumer import Handler
from ordermesh.events import Envelope, Message
from ordermesh.store import Transaction
from ordermesh.topology import Subscription
from user.v1 import events_pb2 as user_events

from services.auth.service import EdgePolicyKeeper

SESSIONS = Subscription(service="auth", purpose="sessions", types=[user_events.SessionRevoked])


def handlers(policy: EdgePolicyKeeper) -> dict[type[Message], Handler]:
    async def revoked(event: user_events.SessionRevoked, _: Envelope, tx: Transaction) -> None:
        await policy.revoke(tx, event.session_id, event.expire_time.ToSeconds())

    return {user_events.SessionRevoked: cast(Handler, revoked)}
