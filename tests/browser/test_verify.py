"""`make verify` against the system `make up` runs (2 instances of every service), as a user runs
it: orders at a fixed rate while one instance of every service is killed in turn and each
service an order's flow reaches fails for a while by its fault switches (turned through the
operator API), then each of the four claims reconciled through the gateway and Prometheus,
PASS or FAIL, and a report with its pictures. Last of the suite (it kills part of the system):
what CI proves of the claims is what the command proves on anyone's deployment.

In this package because it needs the system the browser tests run, started once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ordermesh.flag_file import states

from services import catalogue
from tests.browser.system import RunningSystem


def test_make_verify_proves_the_four_claims_while_it_kills_and_switches_faults_on(
    up: RunningSystem, tmp_path: Path
) -> None:
    report = tmp_path / "verify"
    done = subprocess.run(
        [
            sys.executable, "-m", "tools.verify", "--seconds", "40", "--rate", "5",
            "--customers", "10", "--addresses", "5", "--report", str(report),
            "--faults", "kill,switches",
        ],
        env={**os.environ, **up.env, "ADMIN_PASSWORD": up.admin_password},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads((report / "verify.json").read_text())
    claims = {c["name"]: c for c in found["claims"]}
    assert set(claims) == {"availability", "zero loss", "message processing", "instances"}
    assert all(c["passed"] for c in claims.values()), claims
    assert claims["availability"]["figures"]["sent"] == 200
    assert claims["zero loss"]["figures"]["decided"] == claims["zero loss"]["figures"]["accepted"]
    assert claims["zero loss"]["figures"]["deliveries"] > 0
    # One instance of every service killed, each while the run went on.
    killed = {k["service"] for k in found["kills"] if k["said"]}
    assert killed == {s.name for s in catalogue.CATALOGUE}, found["kills"]
    assert all(0 < k["at_s"] < 40 for k in found["kills"])
    # Each service of an order's flow failed in turn, its switches on, then off again.
    failing = found["failing"]
    assert [f["service"] for f in failing] == ["user", "inventory", "order", "notification"]
    assert all(f["said"] and not f["error"] for f in failing), failing
    assert all(10 <= f["at_s"] < f["until_s"] <= 41 for f in failing), failing
    assert not any(s["on"] for s in states(up.run_dir / "services" / "flags.json"))
    page = (report / "index.html").read_text()
    assert "make verify: PASS" in page
    assert (report / "orders.png").stat().st_size > 0
    assert (report / "latency.png").stat().st_size > 0
