"""`make up` seen from inside, run the way a user runs it (its own run directory and ports):
with an OTLP endpoint it traces the whole system (to a real collector on loopback, rotel) and
the demo scenario leaves spans of every service, the gateway's included; `make status` shows
each service's figures from the Prometheus it runs; `make logs` gathers one request's lines
from every process, and follows new ones; `make load` puts it under load within its limits;
`tools.chaos` kills and pauses its processes by hand."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client

from harness import running
from harness.process import ManagedProcess, free_port
from harness.rotel import PrivateRotel
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
# Every part the demo's requests reach (the console serves people: the demo never opens it).
EVERY = {"gateway", *(service.name for service in catalogue.CATALOGUE if not service.web)}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], PrivateRotel]]:
    """`make up` (one instance of each) tracing to a collector of its own: the environment its
    commands are run with, and the collector."""
    tmp_path = tmp_path_factory.mktemp("make-up")
    collector = PrivateRotel(tmp_path / "rotel")
    collector.start()
    env = {
        "ORDERMESH_RUN_DIR": str(tmp_path / "run"),
        # tools and harness are not installed packages: run them from the checkout.
        "PYTHONPATH": str(ROOT),
        "GATEWAY_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "ALERTMANAGER_PORT": str(free_port()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # Every trace, at the gateway and in the services (the default samples one in ten).
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    process = ManagedProcess(
        "up",
        [sys.executable, "-m", "tools.up", "--instances", "1"],
        directory=tmp_path,
        env=env,
        ready=lambda: "Ctrl-C stops" in process.log_path.read_text(errors="replace"),
        ready_timeout_s=180.0,
        stop_timeout_s=90.0,
    )
    try:
        process.start()
        yield env, collector
    finally:
        process.stop()
        collector.stop()
    assert "stopped." in process.log_path.read_text()


def test_make_up_traces_every_service_shows_its_figures_and_gathers_its_logs(up):
    env, collector = up
    demo = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr

    deadline = time.monotonic() + 30
    while not collector.services() >= EVERY and time.monotonic() < deadline:
        time.sleep(0.5)
    assert collector.services() >= EVERY

    status_shows_each_services_figures(env)
    logs_gather_one_requests_lines_and_follow(env, Path(env["ORDERMESH_RUN_DIR"]))


def test_make_load_runs_shoppers_through_the_gateway_under_its_limits(up):
    """`make load`'s users against `make up` as it is deployed, its limits on: 15 users (about
    12 shoppers, each registering and signing in: twice the sign-in attempts one address may
    make in a minute) for 20 s; none of their requests fails, orders are decided, and each
    endpoint's percentiles are printed."""
    env, _ = up
    done = subprocess.run(
        [sys.executable, "-m", "tools.load", "--users", "15", "--rate", "15", "--duration", "20s"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = line.rsplit(maxsplit=5)
        if len(cells) == 6 and cells[1].isdigit():
            rows[cells[0]] = [int(cells[1]), int(cells[2]), *map(float, cells[3:])]
    for endpoint in (
        "POST /v1/users", "POST /v1/auth/login", "GET /v1/products", "POST /v1/orders",
        "GET /v1/orders/{id}", "SAGA decided APPROVED", "POST /graphql Products", "Aggregated",
    ):  # fmt: skip
        requests, failed, p50, p95, p99 = rows[endpoint]
        assert requests > 0, done.stdout
        assert failed == 0, done.stdout
        assert 0 < p50 <= p95 <= p99, done.stdout
    assert rows["POST /v1/users"][0] >= 10, done.stdout  # the shoppers, each from its address
    assert "failures:" not in done.stdout


def run(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def trusted(env: dict[str, str]) -> ssl.SSLContext:
    """A client trusting the CA `make up` made for its gateway (beside its run directory)."""
    return ssl.create_default_context(
        cafile=str(Path(env["ORDERMESH_RUN_DIR"]).parent / "tls" / "ca.crt")
    )


def status_shows_each_services_figures(env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        for _ in range(5):  # reads of the catalogue, counted by the inventory service
            products = f"https://127.0.0.1:{env['GATEWAY_PORT']}/v1/products"
            with urllib.request.urlopen(products, timeout=5, context=trusted(env)) as answer:
                assert answer.status == 200
        out = run(env, "-m", "tools.status")
        # The figures' table, up to the blank line before the alerts.
        figures = out.partition("last minute, from ")[2].split("\n\n")[0].splitlines()[1:]
        header, rows = figures[0].split() if figures else [], {}
        for line in figures[1:]:
            cells = line.split()
            rows[cells[0]] = cells
        inventory = rows.get("inventory", [])
        if len(inventory) > 1 and inventory[1] not in ("-", "0.0"):
            break
        assert time.monotonic() < deadline, out
        time.sleep(2)
    assert header[:3] == ["service", "req/s", "errors"], out
    assert set(rows) >= {"order", "inventory", "user", "notification"}, out


def logs_gather_one_requests_lines_and_follow(env: dict[str, str], run_dir: Path) -> None:
    services_of: dict[str, set[str]] = defaultdict(set)
    for path in run_dir.rglob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"trace_id"' in line:
                record = json.loads(line)
                services_of[record["trace_id"]].add(record["service"])
    trace_id, services = max(services_of.items(), key=lambda item: len(item[1]))
    assert len(services) >= 2, services_of

    lines = run(env, "-m", "tools.logs", "--id", trace_id, "--follow", "0").splitlines()
    assert {line.split()[1].split("/")[0] for line in lines} == services
    assert [line.split()[0] for line in lines] == sorted(line.split()[0] for line in lines)

    follower = subprocess.Popen(
        [sys.executable, "-m", "tools.logs", "--service", "newcomer"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        assert follower.poll() is None  # it follows
        newcomer = run_dir / "services" / "newcomer" / "newcomer-1.log"
        newcomer.parent.mkdir(parents=True)
        newcomer.write_text(
            json.dumps({"timestamp": "2099-01-01T00:00:00.000000Z", "service": "newcomer",
                        "instance": "newcomer-1", "level": "info", "event": "hello"}) + "\n"
        )  # fmt: skip
        assert follower.stdout is not None
        assert "newcomer/newcomer-1" in follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(10)


def state_of(pid: int) -> str:
    """The kernel's letter for the process's state (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_make_ups_processes_are_killed_and_paused_by_hand_and_come_back(up):
    """`python -m tools.chaos`, last in this module (it kills part of the system): an instance
    killed is started again by `make up` under a new pid and serves again; Redis paused
    is stopped for the time asked, then answers again."""
    env, _ = up
    before = dict(line.split() for line in run(env, "-m", "tools.chaos", "list").splitlines())
    assert {"order-1", "rabbitmq", "redis", "envoy"} <= set(before), before

    said = run(env, "-m", "tools.chaos", "kill", "order-1")
    assert said.startswith(f"order-1 (pid {before['order-1']}) killed")
    deadline = time.monotonic() + 60
    while True:
        now = dict(line.split() for line in run(env, "-m", "tools.chaos", "list").splitlines())
        if now.get("order-1") not in (None, before["order-1"]):
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.5)
    while not any(  # `make status` shows it registered again, answering its health check
        line.split()[:2] == ["order", "order-1"] and "SERVING" in line.split()
        for line in run(env, "-m", "tools.status").splitlines()
    ):
        assert time.monotonic() < deadline, run(env, "-m", "tools.status")
        time.sleep(0.5)

    redis = int(before["redis"])
    pausing = subprocess.Popen(
        [sys.executable, "-m", "tools.chaos", "pause", "redis", "3"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert pausing.stdout is not None
        assert pausing.stdout.readline().startswith(f"redis (pid {redis}) paused for 3 s")
        assert state_of(redis) == "T"
        assert pausing.wait(30) == 0
    finally:
        pausing.kill()
    assert state_of(redis) != "T"
    assert "resumed" in pausing.stdout.read()
    published = running.published(Path(env["ORDERMESH_RUN_DIR"]))
    assert redis_client.Redis.from_url(published["REDIS_URL"], socket_timeout=5).ping()

    refused = subprocess.run(
        [sys.executable, "-m", "tools.chaos", "kill", "nobody"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "no process named 'nobody'" in refused.stderr
