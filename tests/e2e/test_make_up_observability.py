"""`make up` seen from inside, run the way a user runs it (its own run directory and ports):
with an OTLP endpoint it traces the whole system (to a real collector on loopback, rotel) and
the demo scenario leaves spans of every service, the gateway's included; `make status` shows
each service's figures from the Prometheus it runs; `make logs` gathers one request's lines
from every process, and follows new ones."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from harness.process import ManagedProcess, free_port
from harness.rotel import PrivateRotel
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
# Every part the demo's requests reach (the console serves people: the demo never opens it).
EVERY = {"gateway", *(service.name for service in catalogue.CATALOGUE if not service.web)}


def test_make_up_traces_every_service_shows_its_figures_and_gathers_its_logs(tmp_path):
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
    up = ManagedProcess(
        "up",
        [sys.executable, "-m", "tools.up", "--instances", "1"],
        directory=tmp_path,
        env=env,
        ready=lambda: "Ctrl-C stops" in up.log_path.read_text(errors="replace"),
        ready_timeout_s=180.0,
        stop_timeout_s=90.0,
    )
    try:
        up.start()
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
        logs_gather_one_requests_lines_and_follow(env, tmp_path / "run")
    finally:
        up.stop()
        collector.stop()
    assert "stopped." in up.log_path.read_text()


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
