"""Times as stored (seconds since the epoch, a float) and as sent (google.protobuf.Timestamp),
both ways."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["seconds_of", "time_of", "timestamp"]


def timestamp(seconds: float) -> Timestamp:
    """The Timestamp of a stored time, to the nearest nanosecond. The whole seconds and the
    fraction are converted apart: a float of today's epoch seconds times 1e9 loses its last
    digits (1767225600.25 became ...600.249999872)."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1_000_000_000)
    if nanos == 1_000_000_000:
        whole, nanos = whole + 1, 0
    return Timestamp(seconds=whole, nanos=nanos)


def seconds_of(stamp: Timestamp) -> float:
    """The seconds since the epoch a Timestamp says, with its fraction."""
    return stamp.seconds + stamp.nanos / 1e9


def time_of(message: Message, field: str) -> datetime | None:
    """The time in `message`'s Timestamp field `field`, in UTC; None where it is not set."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)
