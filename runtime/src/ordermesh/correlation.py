"""The correlation and causation ids of the work in progress, set at the edges.

An edge (the gRPC server interceptor, an event consumer) sets them from what arrived, or
creates a correlation id; logs, outgoing calls and outgoing messages read them. No function
takes them as parameters. The correlation id names a whole flow (one PlaceOrder and everything
it causes); the causation id is the id of the message being handled, so each message an
effect publishes says which message caused it.

What arrives from outside is accepted only if it is a bounded token of safe characters
(`accepted_correlation_id`, `accepted_traceparent`): a correlation id travels into AMQP
properties (at most 255 bytes), headers and logs, so a client must not be able to choose one
that a broker refuses or a reader misreads. An edge that refuses one starts a new flow.

Every edge takes it the same way, `adopt(value, source=...)`: the value if it is accepted, else
a new id; a refusal is logged, in one line shape (`source`, `length`, the new `correlation_id`).
The gRPC and GraphQL edges read it from `x-correlation-id`, else Envoy's `x-request-id`
(`adopt_header`); the consumer from the message's AMQP `correlation_id` property.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import structlog

__all__ = [
    "CORRELATION_HEADERS",
    "CORRELATION_ID_MAX",
    "accepted_correlation_id",
    "accepted_traceparent",
    "adopt",
    "adopt_header",
    "causation_id",
    "correlation_id",
    "new_correlation_id",
    "traceparent",
]

# Enough for a UUID, a ULID, Envoy's x-request-id or a caller's own scheme; far below AMQP's 255.
CORRELATION_ID_MAX = 128
_TOKEN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{CORRELATION_ID_MAX - 1}}}")
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# Where a gRPC or HTTP caller puts it, in order: ours, else the request id Envoy gives each request.
CORRELATION_HEADERS = ("x-correlation-id", "x-request-id")

# structlog's, not ordermesh.logging's: that module imports this one (its processor adds the id).
log = structlog.stdlib.get_logger(__name__)

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def accepted_correlation_id(value: object) -> str | None:
    """`value` if it is a correlation id an edge may take from outside, else None: 1 to
    CORRELATION_ID_MAX letters, digits and `.`, `_`, `:`, `-`, starting with a letter or digit."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    return None


def adopt(value: str | None, *, source: str) -> str:
    """The correlation id of work that arrived with `value` (None or "" if it came with none):
    `value` if it is accepted (`accepted_correlation_id`), else a new one, the refusal logged.
    `source` says where it came from, for that line (e.g. "grpc x-request-id")."""
    accepted = accepted_correlation_id(value)
    if accepted is not None:
        return accepted
    created = new_correlation_id()
    if value:
        log.warning(
            "correlation id refused: not a safe bounded token; a new one is used",
            source=source,
            length=len(value),
            correlation_id=created,
        )
    return created


def adopt_header(headers: Mapping[str, Any], *, edge: str) -> str:
    """The correlation id of a gRPC call or HTTP request (`edge`: which, for the log): the first
    of CORRELATION_HEADERS it carries, adopted; a new one if it carries none."""
    for header in CORRELATION_HEADERS:
        value = headers.get(header)
        if value:
            return adopt(value, source=f"{edge} {header}")
    return new_correlation_id()


def accepted_traceparent(value: object) -> str | None:
    """`value` if it is a W3C traceparent of version 00, else None."""
    if isinstance(value, str) and _TRACEPARENT.fullmatch(value):
        return value
    return None


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
