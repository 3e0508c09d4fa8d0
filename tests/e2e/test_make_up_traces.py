"""`make up` with an OTLP endpoint traces the whole system: run the way a user runs it (its own
run directory and gateway port), exporting to a real collector on loopback (rotel), the demo
scenario leaves spans of every service, the gateway's included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harness.process import ManagedProcess, free_port
from harness.rotel import PrivateRotel
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]
EVERY = {"gateway", *(service.name for service in catalogue.CATALOGUE)}


def test_make_up_exports_the_spans_of_every_service(tmp_path):
    collector = PrivateRotel(tmp_path / "rotel")
    collector.start()
    env = {
        "ORDERMESH_RUN_DIR": str(tmp_path / "run"),
        # tools and harness are not installed packages: run them from the checkout.
        "PYTHONPATH": str(ROOT),
        "GATEWAY_PORT": str(free_port()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
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
    finally:
        up.stop()
        collector.stop()
    assert "stopped." in up.log_path.read_text()
