"""`python -m chassis new-service` as a developer runs it, in a scratch copy of this checkout:
the command creates a service (its contract, its package, its catalogue entry and subscription,
its tests), `make gen` generates its code and everything that follows from the catalogue, and
then, with nothing edited by hand, the project's checks pass (ruff, mypy, the import-linter
contracts), the contract suite holds, the new service's own unit test passes, and its
end-to-end test runs the whole system (its own broker, Redis, services and gateway, as `make
up` starts them) and calls the new service through the gateway: REST with an admin's token,
the event it publishes through the outbox consumed through its inbox, refusals by access
level. The generated documents and manifests name it.

The scratch copy runs with this checkout's virtualenv (its own code first on the path); the
npm tools of `make gen` are this checkout's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(project: Path, *command: str, timeout: float = 600) -> str:
    env = {**os.environ, "PYTHONPATH": f"{project}:{project / 'gen'}"}
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    return done.stdout


def scratch_copy(target: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) under `target`, with links to its
    installed npm tools."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    for tools in ("tools/node/node_modules", "gateway/graphql/node_modules"):
        (target / tools).symlink_to(ROOT / tools)
    return target


def test_a_new_service_is_created_generated_checked_and_called_through_the_gateway(tmp_path):
    project = scratch_copy(tmp_path / "project")
    said = run(project, sys.executable, "-m", "chassis", "new-service", "shipping",
               "--resource", "shipment")  # fmt: skip
    assert "services/shipping/service.py" in said

    # make gen with this checkout's tools: what it needs installed is installed here.
    installed = [".venv/.installed", "tools/node/node_modules/.installed",
                 "gateway/graphql/node_modules/.installed"]  # fmt: skip
    run(project, "make", "gen", f"BIN={BIN}", *(f"--old-file={f}" for f in installed))

    # Routed, documented and deployable, from the catalogue and the contract alone.
    envoy = (project / "gateway" / "envoy.yaml").read_text()
    assert "/shipping.v1.ShippingService/CreateShipment" in envoy
    assert (
        "/v1/shipments" in json.loads((project / "gateway" / "openapi.json").read_text())["paths"]
    )
    asyncapi = yaml.safe_load((project / "docs" / "asyncapi.yaml").read_text())
    assert "shipping.v1.ShipmentCreated" in json.dumps(asyncapi)
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert compose["services"]["shipping"]["command"] == ["python", "-m", "services.shipping"]
    manifests = "\n".join(
        p.read_text() for p in (project / "deploy" / "kubernetes").rglob("*.yaml")
    )
    assert "name: shipping" in manifests
    # Prometheus scrapes what the registry lists (monitoring.targets): the service's instances
    # once they register, with no line of its own in monitoring/prometheus.yml.

    # The project's checks, with nothing edited by hand.
    run(project, str(BIN / "ruff"), "check", ".")
    run(project, str(BIN / "ruff"), "format", "--check", ".")
    run(project, str(BIN / "lint-imports"))
    run(project, str(BIN / "mypy"), "-p", "services.shipping", timeout=900)
    run(
        project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/contract/test_catalogue.py", "tests/contract/test_contracts.py",
        "tests/unit/test_shipping_domain.py", "tests/e2e/test_shipping.py",
        timeout=900,
    )  # fmt: skip
