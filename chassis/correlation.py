"""The correlation id of the work in progress, set at the edges and read everywhere else.

An edge (the gRPC server interceptor, an event consumer) sets it from what arrived, or creates
one; logs, outgoing calls and outgoing messages read it. No function takes it as a parameter.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

__all__ = ["correlation_id", "new_correlation_id"]

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return str(uuid.uuid4())
