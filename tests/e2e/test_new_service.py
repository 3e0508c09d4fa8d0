"""`python -m ordermesh new-service` as a developer runs it, in a scratch copy of this checkout:
the command creates a service (its contract, its package, its catalogue entry and subscription,
its tests), `make gen` generates its code and everything that follows from the catalogue, and
then, with nothing edited by hand, the project's checks pass (ruff, mypy, the import-linter
contracts), the contract suite holds, the new service's own unit test passes, and its
end-to-end test runs the whole system (its own broker, Redis, services and gateway, as `make
up` starts them) and calls the new service through the gateway: REST with an admin's token,
the event it publishes through the outbox consumed through its inbox, refusals by access
level. The generated documents and manifests name it.

The scratch copy (tests/e2e/scratch.py) runs with this checkout's virtualenv and npm tools, its
own code first on the path."""

from __future__ import annotations

import json
import sys

import yaml

from tests.e2e.scratch import BIN, run, scratch_copy


def test_a_new_service_is_created_generated_checked_and_called_through_the_gateway(tmp_path):
    project = scratch_copy(tmp_path / "project")
    said = run(project, sys.executable, "-m", "ordermesh", "new-service", "shipping",
               "--resource", "shipment")  # fmt: skip
    assert "services/shipping/service.py" in said

    run(project, "make", "gen")

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
    # Prometheus scrapes what the registry lists (ordermesh.targets): the service's instances
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
