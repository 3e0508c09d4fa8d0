"""`make logs` picks one request's lines, a service's, a level and worse, and a time window."""

from datetime import UTC, datetime

import pytest

from tools.logs import Filter, since


def line(**fields):
    return {"timestamp": "2026-12-01T10:00:00.000000Z", "service": "order", "level": "info",
            "event": "rpc handled", **fields}  # fmt: skip


def test_an_id_is_a_correlation_id_or_a_trace_id():
    wanted = Filter(id="abc")

    assert wanted.admits(line(correlation_id="abc"))
    assert wanted.admits(line(trace_id="abc"))
    assert not wanted.admits(line(correlation_id="abd", trace_id="xyz"))
    assert not wanted.admits(line())


def test_a_level_admits_itself_and_worse_and_a_service_only_its_own():
    wanted = Filter(level="warning", service="order")

    assert wanted.admits(line(level="warning"))
    assert wanted.admits(line(level="error"))
    assert not wanted.admits(line(level="info"))
    assert not wanted.admits(line(level="error", service="inventory"))


def test_since_is_a_duration_ago_or_a_time():
    now = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)

    assert since("10m", now=now) == "2026-12-01T10:20:00.000000Z"
    assert since("2h", now=now) == "2026-12-01T08:30:00.000000Z"
    assert since("2026-12-01T09:00:00") == "2026-12-01T09:00:00.000000Z"
    assert Filter(since=since("45m", now=now)).admits(line())
    assert not Filter(since=since("10m", now=now)).admits(line())
    with pytest.raises(ValueError, match="SINCE='yesterday'"):
        since("yesterday")
