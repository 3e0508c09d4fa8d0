"""Times as stored (seconds since the epoch, a float) and as sent (google.protobuf.Timestamp)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["timestamp"]


def timestamp(seconds: float) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(int(seconds * 1_000_000_000))
    return value
