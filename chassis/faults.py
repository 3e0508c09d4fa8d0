"""Whose fault a failure is: the infrastructure's, which passes, or the work's own, which stays.

A consumer treats the two differently (see chassis.consumer): a message whose own fault it is
(undecodable, unknown type, a domain error, a bug in its handler) is retried a bounded number
of times and dead-lettered; an infrastructure fault (the store unavailable, the broker or a
connection gone, a dependency that cannot answer) says nothing about the message, so the
message waits, with bounded backoff, until the infrastructure is back, and is then processed.
"""

from __future__ import annotations

import aiormq.exceptions
import grpc
import grpc.aio

from chassis.broker import BrokerError, Refused
from chassis.errors import Unavailable
from chassis.store import StoreUnavailable

__all__ = ["is_infrastructure"]

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
