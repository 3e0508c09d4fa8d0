"""Every page `make up` prints to open renders in Chromium: answered below 400, no page error, no
script or style sheet missing, and showing what it is for (Prometheus's pages from Debian's
build, whose assets are read from files at run time; Alertmanager's API; the gateway's REST
over its TLS; the shop; the console's sign-in). Then an alert fired by a rule for real reaches
Alertmanager, and `make status` shows it: an instance hung (SIGSTOP: the supervisor restarts
a killed one too soon for the rule's `for: 10s`) is missed by Prometheus's scrapes until
OrdermeshInstanceMissing fires.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page as BrowserPage

from harness.alertmanager import alerts
from tests.browser.system import RunningSystem, eventually, printed_pages
from tools.up import CATALOGUE

PROMETHEUS_TITLE = "Prometheus Time Series Collection and Processing Server"
# A hung instance, to fire OrdermeshInstanceMissing (a notification instance: the saga's path
# does not go through it).
HUNG = "notification-2"


def json_shown(page: BrowserPage) -> Any:
    """The JSON document Chromium shows as text."""
    return json.loads(page.locator("pre").first.inner_text())


def shows_the_catalogue(page: BrowserPage, up: RunningSystem) -> None:
    skus = {product["sku"] for product in json_shown(page)["products"]}
    assert skus >= {sku for sku, *_ in CATALOGUE}


def runs_a_query(page: BrowserPage, up: RunningSystem) -> None:
    assert page.title() == PROMETHEUS_TITLE
    page.locator("textarea[name=expr]").first.fill('up{job="ordermesh"}')
    table = page.locator("table.console_table").first

    def every_instance_listed() -> str | None:
        # Executed again until Prometheus has scraped them all (it starts last in `make up`).
        page.locator("input.execute_btn").first.click()
        page.wait_for_timeout(500)
        rows = table.inner_text()
        # 2 instances of each of the 6 services, and the gateway's Envoy and agent.
        return rows if rows.count('job="ordermesh"') >= 14 else None

    rows = eventually(every_instance_listed, timeout_s=60, what="the query's rows")
    assert 'instance_id="order-2"' in rows


def lists_the_rules_alerts(page: BrowserPage, up: RunningSystem) -> None:
    assert page.title() == PROMETHEUS_TITLE
    text = page.locator("body").inner_text()
    assert re.search(r"Inactive \(\d+\)", text), text
    for alert in ("OrdermeshInstanceMissing", "OrdermeshOutboxStalled", "OrdermeshDeadLetters"):
        assert alert in text


def shows_every_target_up(page: BrowserPage, up: RunningSystem) -> None:
    assert page.title() == PROMETHEUS_TITLE

    def all_up() -> re.Match[str] | None:
        found = re.search(r"ordermesh \((\d+)/(\d+) up\)", page.locator("body").inner_text())
        if found and found[1] == found[2]:
            return found
        page.reload()  # until each has been scraped once (Prometheus starts last)
        return None

    found = eventually(all_up, timeout_s=30, what="every target up")
    # 2 instances of each of the 6 services, and the gateway's Envoy and agent.
    assert int(found[2]) >= 14


def shows_the_shop(page: BrowserPage, up: RunningSystem) -> None:
    # The gateway's root leads to the storefront, open to anyone: the demo catalogue, and a way
    # to sign in (tests/browser/test_storefront.py orders from it).
    assert page.url == f"{up.gateway_url}/shop/"
    assert page.get_by_test_id("product").count() >= 1
    assert page.get_by_test_id("nav-sign-in").is_visible()


def offers_the_admins_sign_in(page: BrowserPage, up: RunningSystem) -> None:
    # Without a session, the console's page is its sign-in form (tests/browser/test_console.py
    # signs in and uses it).
    assert page.url.endswith("/console/login")
    assert page.get_by_label("E-mail").is_visible()
    assert page.get_by_label("Password").is_visible()


def lists_alerts_as_json(page: BrowserPage, up: RunningSystem) -> None:
    assert isinstance(json_shown(page), list)


# What each page must show, by its name in tools.up.pages (every one has a check here).
CHECKS: dict[str, Callable[[BrowserPage, RunningSystem], None]] = {
    "the shop (register, order, follow your orders)": shows_the_shop,
    "the operator console (sign in as the admin)": offers_the_admins_sign_in,
    "the catalogue, through the gateway (REST)": shows_the_catalogue,
    "Prometheus: queries and graphs": runs_a_query,
    "Prometheus: alerts (monitoring/rules.yml)": lists_the_rules_alerts,
    "Prometheus: what it scrapes": shows_every_target_up,
    "Alertmanager: the alerts it holds": lists_alerts_as_json,
}


def test_make_up_prints_the_pages_it_has_and_each_has_a_check(up: RunningSystem) -> None:
    assert printed_pages(up.output) == up.pages
    assert [page.what for page in up.pages] == list(CHECKS)
    assert up.addresses["GATEWAY_URL"].startswith("https://")


@pytest.mark.parametrize("what", CHECKS)
def test_each_printed_page_renders(
    up: RunningSystem, page: BrowserPage, problems: list[str], what: str
) -> None:
    (url,) = [listed.url for listed in up.pages if listed.what == what]
    answer = page.goto(url)
    assert answer is not None
    assert answer.status < 400, f"{url}: {answer.status}"
    page.wait_for_load_state("networkidle")
    CHECKS[what](page, up)
    assert problems == []


def test_an_alert_fired_by_a_rule_reaches_alertmanager_and_make_status(
    up: RunningSystem, page: BrowserPage, problems: list[str]
) -> None:
    alertmanager = up.addresses["ALERTMANAGER_URL"]

    def missing() -> list[dict[str, Any]]:
        return [
            alert
            for alert in alerts(alertmanager)
            if alert["labels"].get("alertname") == "OrdermeshInstanceMissing"
            and alert["labels"].get("instance_id") == HUNG
        ]

    assert missing() == []
    up.pause(HUNG)
    try:
        started = time.monotonic()
        (alert, *_) = eventually(missing, timeout_s=90, what=f"{HUNG} missing in Alertmanager")
        took = time.monotonic() - started
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["service"] == "notification"
        assert alert["status"]["state"] == "active"
        assert HUNG in alert["annotations"]["summary"]
        print(f"OrdermeshInstanceMissing reached Alertmanager {took:.0f} s after the hang")

        # The same, as the operator sees it: Alertmanager's API in the browser, and the rule
        # firing on Prometheus's alerts page, its instance in the details a click unfolds.
        def on_alertmanagers_page() -> bool:
            page.goto(f"{alertmanager}/api/v2/alerts")
            return any(a["labels"].get("instance_id") == HUNG for a in json_shown(page))

        eventually(on_alertmanagers_page, timeout_s=30, what="the alert on /api/v2/alerts")
        prometheus = up.addresses["PROMETHEUS_URL"]

        def firing_on_prometheus_page() -> bool:
            page.goto(f"{prometheus}/classic/alerts")
            if not re.search(r"Firing \([1-9]\d*\)", page.locator("body").inner_text()):
                return False
            rule = page.locator("tr.alert_header.alert-danger", has_text="OrdermeshInstanceMissing")
            if rule.count() == 0:  # the rule's series changed labels: firing again soon
                return False
            rule.click()
            return HUNG in rule.locator("xpath=following-sibling::tr[1]").inner_text()

        eventually(
            firing_on_prometheus_page, timeout_s=30, what="the alert firing on /classic/alerts"
        )

        def in_status() -> list[str]:
            out = up.tool("tools.status")
            table = out.partition(f"alerts, from {alertmanager}:")[2]
            return [line for line in table.splitlines() if HUNG in line]

        # The rule's series gains a label when the registry lets the instance go (monitoring/
        # targets.py marks it lost): the alert resolves and fires again 10 s later.
        (row,) = eventually(in_status, timeout_s=60, what="the alert in `make status`")
        cells = row.split()
        assert cells[:5] == ["OrdermeshInstanceMissing", "warning", "notification", HUNG, "firing"]
        assert re.search(r"\d\d:\d\d:\d\d UTC \(\d+\w* ago\)", row), row
    finally:
        up.resume(HUNG)
    assert problems == []


def test_a_killed_instance_is_started_again_under_a_new_pid(up: RunningSystem) -> None:
    killed = up.kill("inventory-2")

    def serving_again() -> bool:
        if up.pids().get("inventory-2", killed) == killed:
            return False
        rows = [line.split() for line in up.tool("tools.status").splitlines()]
        return any(row[1:2] == ["inventory-2"] and "SERVING" in row for row in rows)

    # Serving again before the next test: the system is the suite's.
    eventually(serving_again, timeout_s=60, what="inventory-2 started again and serving")
    assert "inventory-2 exited; starting it again" in up.output
