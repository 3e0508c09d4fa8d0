"""Debian's Prometheus and Alertmanager, unpacked and run as `make up` runs them: Prometheus's
pages render from the unpacked package's files (not the system's /usr/share), it sends its
alerts to the Alertmanager, which holds what it is sent and answers its page; `make status`
reads the alerts from either."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.alertmanager import PrivateAlertmanager, alerts
from harness.prometheus import PAGES, PrivatePrometheus
from tools.status import alertmanager_alerts, prometheus_alerts

SYSTEM_SHARE = Path("/usr/share/prometheus")


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


@pytest.fixture
def alertmanager(tmp_path: Path):
    manager = PrivateAlertmanager(tmp_path / "alertmanager")
    manager.start()
    yield manager
    manager.stop()


def test_alertmanager_holds_what_it_is_sent_and_status_shows_it(alertmanager):
    had_system_share = SYSTEM_SHARE.exists()
    starts = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    alert = {
        "labels": {"alertname": "OrdermeshInstanceMissing", "severity": "warning",
                   "service": "order", "instance_id": "order-2"},
        "annotations": {"summary": "order instance order-2 does not answer"},
        "startsAt": starts,
    }  # fmt: skip
    request = urllib.request.Request(
        f"{alertmanager.url}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200

    (held,) = alerts(alertmanager.url)
    assert held["labels"]["instance_id"] == "order-2"
    (row,) = alertmanager_alerts(alertmanager.url, datetime.now(UTC))
    assert row[:5] == ("OrdermeshInstanceMissing", "warning", "order", "order-2", "firing")
    assert re.search(r"UTC \(3\ds ago\)$", row[5]), row

    # Its page: Debian's, from the unpacked package (Debian ships no web application).
    status, page = get(f"{alertmanager.url}/")
    assert status == 200
    assert "<title>Alertmanager</title>" in page
    # Its templates were read from the unpacked package, seen by its process alone.
    assert SYSTEM_SHARE.exists() == had_system_share


def test_prometheus_renders_its_pages_and_sends_alerts_to_alertmanager(
    tmp_path, redis_server, alertmanager
):
    prometheus = PrivatePrometheus(
        tmp_path / "prometheus", redis_url=redis_server.url, alertmanager=alertmanager.address
    )
    prometheus.start()
    try:
        for path in PAGES.values():
            status, page = get(f"{prometheus.url}{path}")
            assert status == 200, path
            assert "<title>Prometheus Time Series Collection and Processing Server</title>" in page
        # The assets the pages load: Debian's JavaScript packages unpacked beside it (the
        # UMD build of Popper, which the pages load as a plain script).
        status, script = get(f"{prometheus.url}/classic/static/popper.js/popper.min.js")
        assert status == 200
        assert "export{" not in script.replace(" ", "")
        status, _ = get(f"{prometheus.url}/classic/static/jquery/jquery.min.js")
        assert status == 200

        deadline = time.monotonic() + 15
        while not (sent_to := prometheus.api("alertmanagers")["activeAlertmanagers"]):
            assert time.monotonic() < deadline, "Prometheus found no Alertmanager"
            time.sleep(0.2)
        assert sent_to == [{"url": f"{alertmanager.url}/api/v2/alerts"}]
        # Nothing fires without the system: `make status`'s other source says so too.
        assert prometheus_alerts(prometheus.url, datetime.now(UTC)) == []
    finally:
        prometheus.stop()
