"""The correlation and causation ids of the work in progress, set at the edges.

An edge (the gRPC server interceptor, an event consumer) sets them from what arrived, or
creates a correlation id; logs, outgoing calls and outgoing messages read them. No function
takes them as parameters. The correlation id names a whole flow (one PlaceOrder and everything
it causes); the causation id is the id of the message being handled, so each message an
effect publishes says which message caused it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from contextvars import ContextVar

__all__ = ["causation_id", "correlation_id", "new_correlation_id", "traceparent"]

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def traceparent(correlation: str) -> str:
    """A W3C traceparent whose trace id is derived from the correlation id, with a new span id.

    A UUID correlation id is its own trace id; any other string is hashed to one, so every
    message of one flow carries the same trace id.
    """
    try:
        trace_id = uuid.UUID(correlation).hex
    except ValueError:
        trace_id = hashlib.sha256(correlation.encode()).hexdigest()[:32]
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"
