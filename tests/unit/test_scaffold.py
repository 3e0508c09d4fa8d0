"""`python -m ordermesh new-service` (ordermesh.scaffold) on a project's files: what it writes and
where it names the new service, and that a refusal writes nothing. That the result builds,
passes the project's checks and answers through the gateway is tests/e2e/test_new_service.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ordermesh.scaffold import NewService, Refused, main

ROOT = Path(__file__).resolve().parents[2]
EDITED = ("services/catalogue.py", "services/messaging.py", "pyproject.toml")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files the command edits, as this project has them."""
    for name in (*EDITED, "deploy/checkov/dev.baseline.json", "deploy/checkov/prod.baseline.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_a_service_is_written_and_named_where_the_project_names_its_services(project: Path):
    written = NewService("shipping", resource="parcel").make(project)

    assert (project / "proto/shipping/v1/shipping_service.proto").read_text().count(
        "rpc CreateParcel("
    ) == 1
    assert "message ParcelCreated" in (project / "proto/shipping/v1/events.proto").read_text()
    assert (project / "services/shipping/__main__.py").is_file()
    assert "tests/e2e/test_shipping.py" in written
    catalogue = (project / "services/catalogue.py").read_text()
    assert 'Service("shipping", ShippingSettings, serves=("shipping.v1.ShippingService",))' in (
        catalogue
    )
    assert "from services.shipping.config import ShippingSettings" in catalogue
    assert '"shipping": [shipping.EVENTS]' in (project / "services/messaging.py").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    assert '"shipping.*"' in pyproject
    assert '"services.shipping"' in pyproject
    for overlay in ("dev", "prod"):
        baseline = json.loads((project / f"deploy/checkov/{overlay}.baseline.json").read_text())
        resources = {f["resource"] for c in baseline["failed_checks"] for f in c["findings"]}
        assert "Deployment.ordermesh.shipping" in resources


@pytest.mark.parametrize(
    ("name", "resource", "why"),
    [
        ("Shipping", "item", "lowercase words"),
        ("ship-ping", "item", "lowercase words"),
        ("shipping", "Parcel", "lowercase words"),
        ("shipping", "shipping", "a name of its own"),
        ("user", "item", "has a user service already"),
    ],
)
def test_a_refused_service_writes_nothing(project: Path, name: str, resource: str, why: str):
    (project / "services/user").mkdir()
    before = contents(project)
    with pytest.raises(Refused, match=why):
        NewService(name, resource=resource).make(project)
    assert contents(project) == before


def test_a_project_that_names_its_services_elsewhere_is_told_and_left_alone(project: Path):
    messaging = project / "services/messaging.py"
    messaging.write_text(messaging.read_text().replace("def subscriptions()", "def queues()"))
    before = contents(project)
    with pytest.raises(Refused, match="subscriptions"):
        NewService("shipping").make(project)
    assert contents(project) == before


def test_the_command_says_what_it_wrote_or_why_not(project: Path, capsys):
    assert main(["new-service", "Nope", "--root", str(project)]) == 2
    assert "lowercase words" in capsys.readouterr().err
    assert main(["new-service", "shipping", "--root", str(project)]) == 0
    out = capsys.readouterr().out
    assert "services/shipping/service.py" in out
    assert "/v1/items" in out
