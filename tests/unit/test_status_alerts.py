"""`make status` shows each alert with its name, severity, service, instance, state and since
when, read from Alertmanager's API v2 or, without one, from Prometheus's."""

from datetime import UTC, datetime

from tools.status import alert_row, since

NOW = datetime(2026, 12, 6, 10, 30, 0, tzinfo=UTC)


def test_since_is_the_time_in_utc_and_how_long_ago():
    # Alertmanager's startsAt (milliseconds), Prometheus's activeAt (nanoseconds), an offset.
    assert since("2026-12-06T10:29:51.123Z", NOW) == "2026-12-06 10:29:51 UTC (9s ago)"
    assert since("2026-12-06T10:27:55.123456789Z", NOW) == "2026-12-06 10:27:55 UTC (2m05s ago)"
    assert since("2026-12-06T11:00:00+02:00", NOW) == "2026-12-06 09:00:00 UTC (1h30m ago)"
    # A clock a little ahead of this one's is no alert from the future.
    assert since("2026-12-06T10:30:02Z", NOW) == "2026-12-06 10:30:02 UTC (0s ago)"


def test_a_row_names_the_instance_or_else_the_target_and_the_queue_of_a_queues_alert():
    instance = {
        "alertname": "OrdermeshInstanceMissing",
        "severity": "warning",
        "service": "order",
        "instance_id": "order-2",
        "instance": "127.0.0.1:9464",
    }
    queue = {"alertname": "OrdermeshDeadLetters", "severity": "warning", "queue": "order.dlq"}

    assert alert_row(instance, "firing", "2026-12-06T10:29:00Z", NOW) == (
        "OrdermeshInstanceMissing", "warning", "order", "order-2", "firing",
        "2026-12-06 10:29:00 UTC (1m00s ago)",
    )  # fmt: skip
    assert alert_row(queue, "pending", "2026-12-06T10:29:00Z", NOW)[:4] == (
        "OrdermeshDeadLetters", "warning", "order.dlq", "-",
    )  # fmt: skip
