"""`make bench-console`: what keeping the operator console open costs the system, and how long its
pages take, on `make up` with N instances of every service (10 by default).

Starts the system as a user does (`python -m tools.up --instances N`, its own run directory and
ports, logs at INFO), places one order through the gateway, then measures, in this one run:

- the CPU of every process `make up` runs (services, gateway, broker, Redis, Prometheus...,
  their children too), in cores, over WINDOW_S with no console open: the baseline; then over
  as long with the console's live page open and idle in Debian's Chromium (it asks for its live
  fragment every 2 s), alternating ROUNDS times so that drift hits both alike. The console's
  cost is the difference, as a share of one core, printed too for each part of the system (the
  console, the gateway, Prometheus...: where the cost goes);
- the time of the live fragment (what the open page asks for every 2 s), of the live page and
  of one order's story (`/console/story?id=<order id>`: the saga, every service's message
  history, twice, and the log lines of every process), each asked SAMPLES times in a row by a
  client signed in as the admin (HTTPS through the gateway, as the browser asks): p50 and p95.

Ends with `RESULT ref_ms=... instances=... idle_cores=... with_console_cores=...
console_cost_pct_core=... live_fragment_p50_ms=... live_page_p50_ms=... story_p50_ms=...`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import ssl
import time
import uuid
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright

from bench.events import percentile
from bench.machine import cpu_s, reference_ms
from bench.systems import rest_customer
from harness import running
from harness.process import ManagedProcess
from harness.running import ADMIN, make_up

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def part(name: str) -> str:
    """The part of the system a process of `make up` is: `order-3` -> `order`, `envoy`."""
    return re.sub(r"-\d+$", "", name)


def system_cpu_s(run_dir: Path) -> dict[str, float]:
    """CPU seconds used so far by every process `make up` runs and their children, by part."""
    used: dict[str, float] = {}
    for name, pid in running.processes(run_dir).items():
        used[part(name)] = used.get(part(name), 0.0) + cpu_s([pid], with_children=True)
    return used


async def cores_over(run_dir: Path, seconds: float) -> dict[str, float]:
    """The cores each part of the system used over the next `seconds`."""
    before, started = system_cpu_s(run_dir), time.monotonic()
    await asyncio.sleep(seconds)
    after, elapsed = system_cpu_s(run_dir), time.monotonic() - started
    return {name: (after[name] - before.get(name, 0.0)) / elapsed for name in after}


async def signed_in(http: aiohttp.ClientSession, gateway: str, email: str, password: str) -> None:
    """Signs `http` in at the console as a browser does: its form, its CSRF token, its origin."""
    async with http.get(f"{gateway}/console/login") as answer:
        form = await answer.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:500]
    fields = {"csrf_token": token[1], "email": email, "password": password}
    async with http.post(
        f"{gateway}/console/login",
        data=fields,
        headers={"origin": gateway, "sec-fetch-site": "same-origin"},
    ) as answer:
        assert answer.status == 200, answer.status
        assert answer.url.path.rstrip("/") == "/console", answer.url  # signed in: its home


async def timed(http: aiohttp.ClientSession, url: str, samples: int, **headers: str) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        async with http.get(url, headers=headers) as answer:
            await answer.read()
            assert answer.status == 200, (url, answer.status)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def an_order(http: aiohttp.ClientSession, gateway: str) -> str:
    """One order placed and approved through the gateway's REST API, by a new customer."""
    auth = await rest_customer(http, gateway)
    async with http.get(f"{gateway}/v1/products") as answer:
        product = (await answer.json())["products"][0]["productId"]
    order = {"idempotencyKey": str(uuid.uuid4()), "items": [{"productId": product, "quantity": 1}]}
    async with http.post(f"{gateway}/v1/orders", json=order, headers=auth) as answer:
        order_id = str((await answer.json())["order"]["orderId"])
    for _ in range(100):
        async with http.get(f"{gateway}/v1/orders/{order_id}", headers=auth) as answer:
            if (await answer.json())["order"]["status"] == "ORDER_STATUS_APPROVED":
                return order_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} not approved in 10 s")


async def measure(args: argparse.Namespace, up: ManagedProcess, run_dir: Path) -> dict[str, str]:
    output = up.log_path.read_text(errors="replace")
    admin = ADMIN.search(output)
    assert admin, output
    addresses = running.published(run_dir)
    gateway = addresses["GATEWAY_URL"]
    tls = ssl.create_default_context(cafile=addresses["GATEWAY_CA"])
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    connector = aiohttp.TCPConnector(ssl=tls)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:
        order_id = await an_order(http, gateway)
        await signed_in(http, gateway, admin[1], admin[2])
        await asyncio.sleep(args.settle_s)  # every instance scraped, every figure there
        idle, console = [], []
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            # Loopback to the gateway this run started, with the certificate of its local CA.
            context = await chromium.new_context(ignore_https_errors=True)
            page = await context.new_page()
            for round in range(args.rounds):
                idle.append(await cores_over(run_dir, args.window_s))
                await page.goto(f"{gateway}/console/")
                if round == 0:  # signed in once; its session lasts the run
                    await page.get_by_test_id("login-email").fill(admin[1])
                    await page.get_by_test_id("login-password").fill(admin[2])
                    await page.get_by_test_id("login-submit").click()
                await page.get_by_test_id("services").wait_for()
                console.append(await cores_over(run_dir, args.window_s))
                await page.goto("about:blank")
                print(
                    f"round {round + 1}: idle {sum(idle[-1].values()):.3f} cores, with the "
                    f"console open {sum(console[-1].values()):.3f}",
                    flush=True,
                )
            await chromium.close()
        fragment = await timed(
            http, f"{gateway}/console/fragments/live", args.samples, **{"hx-request": "true"}
        )
        live = await timed(http, f"{gateway}/console/", args.samples)
        story = await timed(http, f"{gateway}/console/story?id={order_id}", args.samples)
    idle_cores = sum(sum(used.values()) for used in idle) / len(idle)
    console_cores = sum(sum(used.values()) for used in console) / len(console)
    # Where the console's cost goes: each part's extra CPU with the console open, largest first.
    extra = {
        name: sum(used.get(name, 0.0) for used in console) / len(console)
        - sum(used.get(name, 0.0) for used in idle) / len(idle)
        for name in console[0]
    }
    for name, cores in sorted(extra.items(), key=lambda item: -item[1])[:8]:
        print(f"with the console open, {name}: {cores * 100:+.1f} % of a core")
    for name, times in (("live fragment", fragment), ("live page", live), ("story", story)):
        print(f"{name}: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms")
    return {
        "idle_cores": f"{idle_cores:.3f}",
        "with_console_cores": f"{console_cores:.3f}",
        "console_cost_pct_core": f"{(console_cores - idle_cores) * 100:.1f}",
        "live_fragment_p50_ms": f"{percentile(fragment, 50):.0f}",
        "live_fragment_p95_ms": f"{percentile(fragment, 95):.0f}",
        "live_page_p50_ms": f"{percentile(live, 50):.0f}",
        "story_p50_ms": f"{percentile(story, 50):.0f}",
        "story_p95_ms": f"{percentile(story, 95):.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--settle-s", type=float, default=20.0)
    args = parser.parse_args()
    reference = reference_ms()
    started = time.monotonic()
    with make_up(args.instances) as (up, run_dir):
        print(
            f"make up with {args.instances} instances of every service: ready in "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
        figures = asyncio.run(measure(args, up, run_dir))
    shown = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"RESULT ref_ms={reference:.0f} instances={args.instances} {shown}")


if __name__ == "__main__":
    main()
