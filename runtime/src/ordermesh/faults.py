"""Whose fault a failure is: the infrastructure's or contention's, which pass, or the work's own,
which stays.

A consumer treats them differently (see ordermesh.consumer): a message whose own fault it is
(undecodable, unknown type, a domain error, a bug in its handler) is retried a bounded number
of times and dead-lettered; an infrastructure fault (the store unavailable or read-only, the
broker or a connection gone, a dependency that cannot answer) says nothing about the message,
and neither does contention (concurrent transactions kept changing what the work changes: a
VersionConflict that outlasted `run_transaction`'s reruns, as when many consumers update one
document or a long transaction holds its row). So the message waits, with bounded backoff,
until the infrastructure is back or the contention has passed, and is then processed.
"""

from __future__ import annotations

from typing import Literal

import aiormq.exceptions
import grpc
import grpc.aio

from ordermesh.broker import BrokerError, Refused
from ordermesh.errors import Unavailable
from ordermesh.store import StoreUnavailable, VersionConflict

__all__ = ["Fault", "is_contention", "is_infrastructure", "passing_fault"]

Fault = Literal["infrastructure", "contention"]

INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    BrokerError,
    Unavailable,
    ConnectionError,
    TimeoutError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)
UNANSWERED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def is_infrastructure(error: BaseException) -> bool:
    """Whether `error` is an infrastructure fault: it would pass if the same work ran later."""
    if isinstance(error, Refused):  # the broker will refuse that message every time
        return False
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in UNANSWERED
    return isinstance(error, INFRASTRUCTURE)


def is_contention(error: BaseException) -> bool:
    """Whether `error` is contention: concurrent work won every time the work ran (a
    VersionConflict out of `run_transaction`); the same work, run once they are done, passes."""
    return isinstance(error, VersionConflict)


def passing_fault(error: BaseException) -> Fault | None:
    """Which fault that passes `error` is, or None if it is the work's own."""
    if is_infrastructure(error):
        return "infrastructure"
    if is_contention(error):
        return "contention"
    return None
