"""Fakes: none. Every page these tests open is served by the real processes of `make up`
(`python -m tools.up`: RabbitMQ, Redis, the services, Envoy, the GraphQL gateway, Prometheus,
Alertmanager), started once for the whole browser suite, and opened in a real Chromium
(Debian's /usr/bin/chromium, driven by Playwright; `playwright install` is never run).

The fixtures, for any browser test (the web console's too):

- `up` (this package's: stopped once the browser tests end, so that the other suites do not run
  beside it): the system, started for real as `make up` starts it (2 instances of every
  service) with a run directory of its own and free ports, and stopped after the suite. A
  `RunningSystem`: `.gateway_url`, `.admin_email`, `.admin_password`, `.ca_file` (the local CA
  the gateway's certificate comes from), `.pages` (every page `make up` printed to open, as
  `tools.up.Page`), `.addresses` (what it published: GATEWAY_URL, PROMETHEUS_URL,
  ALERTMANAGER_URL...), `.run_dir` (its logs and state), `.output` (what it printed so far);
  `.pids()` (every process it runs: `order-2`, `envoy`, `prometheus`...), `.kill(name)` (SIGKILL,
  as a crash: its supervisor starts it again, under a new pid), `.pause(name)` /
  `.resume(name)` (SIGSTOP / SIGCONT: a hung process, which nothing restarts: resume it before
  the test ends), and `.tool("tools.status")` (a `make` command run against it). Its class,
  and `eventually` (a condition waited for), are in tests/browser/system.py to import.
- `browser` (this package's): Chromium, headless, with a fresh profile (Playwright's `launch` gives
  it a new temporary user-data dir and removes it on close), trusting the gateway's certificate
  (`--ignore-certificate-errors-spki-list` with its key's pin) and no other.
- `page` (each test): a page in a context of its own (no cookies or storage shared), and
  `problems`: every page error and every answer >= 400 that page met, for tests to assert empty.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Page as BrowserPage

from harness import running
from tests.browser.system import RunningSystem, spki_pin
from tools.up import pages

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet, as root: without these Chromium keeps trying to reach outside hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    directory = tmp_path_factory.mktemp("make-up")
    settings = {
        # The services inherit these: a saga's step times out after 3 s and a compensation is
        # given up after 2 sends, so that a test parks a saga for an operator in seconds
        # (test_console.py), not the minutes the defaults (30 s, 10 sends) would take; and the
        # suite, one client address, signs in (customers, the admin, the console) some 20
        # times in a few minutes, past the default 10 a minute.
        "SAGA_STEP_TIMEOUT_S": "3",
        "SAGA_COMPENSATION_SENDS": "2",
        "RATE_LIMIT_SIGN_IN": "100/m",
        # A shop's session ends after 15 s without use (the default is an hour), so that a test
        # sees what a customer sees when it does (test_storefront.py).
        "STOREFRONT_SESSION_TTL_S": "15",
    }
    with running.make_up(2, env=settings, directory=directory) as (process, run_dir):
        # What a `make` command run against it needs (`RunningSystem.tool`).
        env = {"ORDERMESH_RUN_DIR": str(run_dir), "PYTHONPATH": str(ROOT), **settings}
        admin = running.ADMIN.search(process.log_path.read_text(errors="replace"))
        assert admin, process.log_path.read_text(errors="replace")
        addresses = running.published(run_dir)
        listed = pages(
            addresses["GATEWAY_URL"], addresses["PROMETHEUS_URL"], addresses["ALERTMANAGER_URL"]
        )
        yield RunningSystem(
            process=process,
            run_dir=run_dir,
            env=env,
            admin_email=admin[1],
            admin_password=admin[2],
            addresses=addresses,
            pages=listed,
        )
    assert "stopped." in process.log_path.read_text(errors="replace")


@pytest.fixture(scope="package")
def browser(up: RunningSystem) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `tools/system-deps.sh --test` (Debian's chromium)")
    trusted = f"--ignore-certificate-errors-spki-list={spki_pin(up.gateway_certificate)}"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, trusted]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[BrowserPage]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def problems(page: BrowserPage) -> list[str]:
    """Every page error and every answer >= 400 (a missing script or style sheet too) that
    `page` meets from now on."""
    met: list[str] = []
    page.on("pageerror", lambda error: met.append(f"page error: {error}"))
    page.on(
        "response",
        lambda answer: (
            met.append(f"{answer.status} {answer.url}") if answer.status >= 400 else None
        ),
    )
    return met


@pytest.fixture
def screenshot() -> Callable[[BrowserPage, str], None]:
    """`screenshot(page, name)`: the page as the browser shows it, saved as
    `$ORDERMESH_SCREENSHOTS/<name>.png` when that is set (`make screenshots`: docs/images, where
    docs/operations.md and the README show them); nothing otherwise."""
    directory = os.environ.get("ORDERMESH_SCREENSHOTS", "")

    def take(page: BrowserPage, name: str) -> None:
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)

    return take
