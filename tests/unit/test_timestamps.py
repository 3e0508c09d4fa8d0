"""Stored times (seconds, a float) and sent ones (Timestamp) convert both ways without drift."""

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from ordermesh.contracts.ops.v1 import ops_service_pb2 as ops
from ordermesh.timestamps import seconds_of, time_of, timestamp


def test_seconds_survive_the_round_trip_to_a_microsecond():
    for seconds in (0.0, 1.5, 1_767_225_600.123456, 1_767_225_600.999999):
        assert abs(seconds_of(timestamp(seconds)) - seconds) < 1e-6


def test_a_set_time_reads_in_utc_and_an_unset_one_as_none():
    saga = ops.Saga(start_time=timestamp(1_767_225_600.25))

    assert time_of(saga, "start_time") == datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert time_of(saga, "update_time") is None


def test_a_stored_time_is_sent_to_the_nearest_nanosecond():
    assert timestamp(1_767_225_600.25) == Timestamp(seconds=1_767_225_600, nanos=250_000_000)
    assert timestamp(0.9999999999) == Timestamp(seconds=1, nanos=0)
    assert timestamp(-1.5) == Timestamp(seconds=-2, nanos=500_000_000)
