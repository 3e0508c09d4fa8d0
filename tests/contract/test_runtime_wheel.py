"""The runtime as a user installs it: its wheel (`make wheel`) holds the `ordermesh` package and
nothing of the example shop, says what it needs, and works installed alone into a fresh
virtualenv: its modules, its own contracts and its command import from there. Then a project of
its own, outside this repository, on that installed runtime: one service's contract, its
catalogue, protoc's code adopted by the runtime (`ordermesh.contracts.adopt`), its deployment
(`ordermesh.deploy.Project`, with a one-shot step of its own), and the runtime's generators run
for it (the OpenAPI and AsyncAPI documents; Envoy's configuration, which Envoy validates;
compose.yaml, checked against the compose specification's schema; the Kubernetes manifests,
rendered by kustomize and validated against Kubernetes' schemas). What they make comes from the
project's contract, catalogue and deployment alone."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import google.api
import grpc_tools
import ordermesh
import pytest
import yaml

from deploy.envoy import envoy_binary
from deploy.images import runtime_wheel

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.33.0"  # the Makefile's
PROJECT = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["project"]


CONTRACT = """syntax = "proto3";

package parcel.v1;

import "common/v1/options.proto";
import "google/api/annotations.proto";

service ParcelService {
  option (common.v1.api_lifecycle) = {stability: STABILITY_BETA};

  // The parcels, a page at a time.
  rpc ListParcels(ListParcelsRequest) returns (ListParcelsResponse) {
    option (common.v1.access) = ACCESS_PUBLIC;
    option (google.api.http) = {get: "/v1/parcels"};
  }
  // Sends a parcel, once per idempotency key.
  rpc SendParcel(SendParcelRequest) returns (SendParcelResponse) {
    option (common.v1.access) = ACCESS_AUTHENTICATED;
    option (google.api.http) = {post: "/v1/parcels", body: "*"};
  }
  // Not for the gateway.
  rpc Sweep(SweepRequest) returns (SweepResponse) {
    option (common.v1.access) = ACCESS_INTERNAL;
  }
}

message ListParcelsRequest {
  int32 page_size = 1;
}
message ListParcelsResponse {
  repeated string parcel_ids = 1;
}
message SendParcelRequest {
  string idempotency_key = 1 [(common.v1.bounds) = {max_length: 64}];
  string address = 2 [(common.v1.bounds) = {max_length: 200}];
}
message SendParcelResponse {
  string parcel_id = 1;
}
message SweepRequest {}
message SweepResponse {}

// A parcel left: published once it is recorded.
message ParcelSent {
  option (common.v1.route) = {
    exchange: "parcel.events"
    exchange_kind: EXCHANGE_KIND_TOPIC
    routing_key: "parcel.sent"
    kind: MESSAGE_KIND_EVENT
  };
  string parcel_id = 1;
}
"""

MESSAGING = """
from parcel.v1 import parcel_service_pb2 as pb


def events_published():
    return {"parcel": [pb.ParcelSent]}


def commands_sent():
    return {}


def subscriptions():
    return {}
"""

CATALOGUE = """
from ordermesh.catalogue import Catalogue, Service
from ordermesh.gateway.services import GATEWAY_SERVICES
from ordermesh.runtime import AuthenticatedSettings
from ordermesh.tokens import KeyIssuer


class ParcelSettings(AuthenticatedSettings):
    pass


async def _keys(channel, timeout_s):
    # The issuer's RPC that publishes its keys: the generators read the issuer's name only.
    raise RuntimeError("the generators never fetch the issuer's keys")


CATALOGUE = Catalogue(
    (Service("parcel", ParcelSettings, serves=("parcel.v1.ParcelService",)), *GATEWAY_SERVICES),
    issuer=KeyIssuer("parcel", _keys),
)
"""


DEPLOYMENT = """
from pathlib import Path

from ordermesh.deploy import Project, SecretKey, Step

from catalogue import CATALOGUE

# The depots a parcel may leave from, loaded before the service serves.
LOAD_DEPOTS = Step(
    name="load-depots",
    service="parcel",
    command='exec python -m parcel_depots --from "$DEPOTS_URL"',
    settings={"DEPOTS_URL": "https://depots.example/v1"},
    secrets={"DEPOTS_TOKEN": SecretKey("parcel-depots", "token")},
)

PROJECT = Project(
    name="parcel",
    catalogue=CATALOGUE,
    descriptor_set=Path("gen/descriptors.pb"),
    image="parcel",
    version="1.2.0",
    schema_module="parcel_schema",
    steps=(LOAD_DEPOTS,),
    catalogue_at="catalogue:CATALOGUE",
)
"""

ALERTMANAGER = """route:
  receiver: nobody
receivers:
  - name: nobody
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return runtime_wheel(tmp_path_factory.mktemp("dist"))


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with the wheel installed, and a directory to work in. Its
    dependencies are the test run's (this machine installs nothing from an index) as a path of
    their own: the repository's editable installs (their .pth files) are not read from it."""

    root: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    def run(self, *args: str | Path) -> str:
        done = subprocess.run(
            [self.python, *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("project")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    clean = {"PATH": os.environ["PATH"], "HOME": str(root)}
    subprocess.run(
        [root / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", "--no-index", wheel],
        env=clean, check=True,
    )  # fmt: skip
    dependencies = next(p for p in sys.path if p.endswith("site-packages"))
    return Installed(root, {**clean, "PYTHONPATH": f"{root}:{root / 'gen'}:{dependencies}"})


def test_the_wheel_holds_the_runtime_and_nothing_of_the_example(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}

    assert tops == {"ordermesh", f"ordermesh-{ordermesh.__version__}.dist-info"}
    assert {
        "ordermesh/py.typed",
        "ordermesh/templates/new_service/service.py.j2",
        "ordermesh/contracts/common/v1/options.proto",
        "ordermesh/contracts/common/v1/options_pb2.py",
        "ordermesh/contracts/common/v1/options_pb2.pyi",
        "ordermesh/contracts/ops/v1/ops_service.proto",
        "ordermesh/contracts/ops/v1/ops_service_pb2_grpc.pyi",
    } <= set(names)


def test_its_metadata_says_what_it_is_and_needs(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.message_from_bytes(
            archive.read(f"ordermesh-{ordermesh.__version__}.dist-info/METADATA")
        )

    assert metadata["Name"] == "ordermesh"
    assert metadata["Version"] == ordermesh.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.11"
    required = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(required) == sorted(r.replace(" ", "") for r in PROJECT["dependencies"])
    assert metadata.get_all("Provides-Extra") == ["generators"]


def test_installed_alone_it_imports_and_runs_its_command(installed: Installed):
    check = (
        "import importlib.metadata, importlib.util, ordermesh, ordermesh.grpc, ordermesh.runtime\n"
        "from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc\n"
        "from ordermesh.contracts.common.v1 import options_pb2\n"
        "print(ordermesh.__file__)\n"
        "print(importlib.metadata.version('ordermesh'))\n"
        "print([m for m in ('services', 'gen', 'common', 'ops', 'user', 'harness')"
        " if importlib.util.find_spec(m)])\n"
    )

    found = installed.run("-c", check).splitlines()
    usage = installed.run("-m", "ordermesh", "new-service", "--help")

    assert Path(found[0]).is_relative_to(installed.root / "venv")
    assert found[1:] == [ordermesh.__version__, "[]"]
    assert "new-service" in usage


@pytest.fixture(scope="module")
def project(installed: Installed) -> Installed:
    """The project: its contract and its catalogue, and protoc's code for it in gen/, adopted."""
    root = installed.root
    (root / "proto" / "parcel" / "v1").mkdir(parents=True)
    (root / "proto" / "parcel" / "v1" / "parcel_service.proto").write_text(CONTRACT)
    (root / "catalogue.py").write_text(CATALOGUE)
    (root / "messaging.py").write_text(MESSAGING)
    (root / "deployment.py").write_text(DEPLOYMENT)
    (root / "monitoring").mkdir()
    (root / "monitoring" / "alertmanager.yml").write_text(ALERTMANAGER)
    (root / "gen").mkdir()
    where = "from ordermesh.contracts import include_path; print(include_path())"
    installed.run(
        "-m", "grpc_tools.protoc",
        "-Iproto", f"-I{installed.run('-c', where).strip()}",
        f"-I{Path(google.api.__path__[0]).parent.parent}",
        f"-I{Path(grpc_tools.__path__[0]) / '_proto'}",
        "--python_out=gen", "--grpc_python_out=gen", "--include_imports",
        "--descriptor_set_out=gen/descriptors.pb", "parcel/v1/parcel_service.proto",
    )  # fmt: skip
    installed.run("-c", "import pathlib, ordermesh.contracts as c; c.adopt(pathlib.Path('gen'))")
    return installed


def test_protocs_code_uses_the_runtimes_contracts(project):
    found = project.run(
        "-c",
        "import ordermesh, parcel.v1.parcel_service_pb2 as pb\n"
        "from ordermesh.contracts.common.v1 import options_pb2\n"
        "method = pb.DESCRIPTOR.services_by_name['ParcelService'].methods_by_name['SendParcel']\n"
        "print(method.GetOptions().Extensions[options_pb2.access])\n"
        "print(ordermesh.__file__)",
    ).split()  # fmt: skip

    assert found[0] == "2"  # ACCESS_AUTHENTICATED, read through the runtime's options
    assert Path(found[1]).is_relative_to(project.root / "venv")
    assert not (project.root / "gen" / "common").exists()  # no copy of the runtime's own contracts


def test_the_openapi_document_is_the_projects_rest_api(project):
    project.run(
        "-m", "ordermesh.gateway.openapi",
        "--descriptors", "gen/descriptors.pb", "--catalogue", "catalogue:CATALOGUE",
        "--title", "Parcels", "-o", "openapi.json",
    )  # fmt: skip
    document = json.loads((project.root / "openapi.json").read_text())

    assert document["info"]["title"] == "Parcels"
    assert set(document["paths"]) == {"/v1/parcels"}
    parcels = document["paths"]["/v1/parcels"]
    assert "security" not in parcels["get"]
    assert parcels["post"]["security"] == [{"bearer": []}]
    body = parcels["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert request["properties"]["address"]["maxLength"] == 200


def test_envoys_configuration_routes_the_projects_rpcs_and_envoy_accepts_it(project):
    project.run(
        "-m", "ordermesh.gateway.envoy",
        "--catalogue", "catalogue:CATALOGUE", "--descriptors", "gen/descriptors.pb",
        "--graphql-address", "", "--plaintext", "--prepare",
        "--eds-dir", "run/eds", "--policy-dir", "run/policy", "-o", "envoy.json",
    )  # fmt: skip
    config = (project.root / "envoy.json").read_text()
    validated = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", "envoy.json"],
        cwd=project.root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert "/parcel.v1.ParcelService/ListParcels" in config
    assert "/parcel.v1.ParcelService/SendParcel" in config
    assert "/parcel.v1.ParcelService/Sweep" not in config  # INTERNAL: never routed
    assert (project.root / "run" / "eds" / "parcel.json").exists()  # its cluster's endpoints file
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_the_asyncapi_document_is_the_projects_backbone(project):
    project.run(
        "-m", "ordermesh.asyncapi", "--messaging", "messaging", "--proto", "proto",
        "--title", "Parcels", "-o", "asyncapi.yaml",
    )  # fmt: skip
    document = yaml.safe_load((project.root / "asyncapi.yaml").read_text())

    assert document["info"]["title"] == "Parcels"
    assert document["channels"]["parcel.events/parcel.sent"]["address"] == "parcel.sent"
    assert set(document["operations"]) == {"parcel.send.parcel.v1.ParcelSent"}
    payload = document["components"]["messages"]["parcel.v1.ParcelSent"]["payload"]["schema"]
    assert "// A parcel left: published once it is recorded." in payload


def test_compose_runs_the_projects_services_and_its_own_step(project):
    project.run("-m", "ordermesh.deploy.compose", "--project", "deployment:PROJECT")
    compose = yaml.safe_load((project.root / "compose.yaml").read_text())
    services = compose["services"]
    checked = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml",
         "deploy/compose.mongodb.yaml"],
        cwd=project.root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert compose["name"] == "parcel"
    assert {"parcel", "parcel-schema", "load-depots", "gateway", "gateway-agent"} <= set(services)
    assert "graphql" not in services  # no federation: no federation gateway, no /graphql
    rendering = services["gateway-config"]["command"][2]  # Envoy's configuration, at `up`
    assert "--graphql-address '' " in rendering  # no /graphql
    assert "--catalogue catalogue:CATALOGUE " in rendering
    parcel, step = services["parcel"], services["load-depots"]
    assert parcel["image"] == "${ORDERMESH_IMAGE:-localhost/parcel:latest}"
    assert parcel["command"] == ["python", "-m", "services.parcel"]
    assert "load-depots" in parcel["depends_on"]
    assert services["parcel-schema"]["command"] == ["python", "-m", "parcel_schema", "parcel"]
    assert step["command"] == ["sh", "-c", 'exec python -m parcel_depots --from "$$DEPOTS_URL"']
    assert step["environment"]["DEPOTS_URL"] == "${DEPOTS_URL:-https://depots.example/v1}"
    assert step["environment"]["DEPOTS_TOKEN"].startswith("${DEPOTS_TOKEN:?")
    assert step["environment"]["STORE_URL"] == parcel["environment"]["STORE_URL"]
    assert "parcel_runtime" in (project.root / "deploy" / "postgres" / "init.sql").read_text()
    # The gateway's own services are the runtime's, told where the project's catalogue is, and
    # where its token issuer answers.
    auth = services["auth"]
    assert auth["command"] == ["python", "-m", "ordermesh.gateway.auth"]
    assert services["ratelimit"]["command"] == ["python", "-m", "ordermesh.gateway.ratelimit"]
    assert auth["environment"]["CATALOGUE"] == "catalogue:CATALOGUE"
    assert services["gateway-agent"]["environment"]["CATALOGUE"] == "catalogue:CATALOGUE"
    assert "PARCEL_SERVICE_ADDR" in auth["environment"]
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_kubernetes_manifests_deploy_the_project_and_kubernetes_accepts_them(project, overlay):
    project.run("-m", "ordermesh.deploy.manifests", "--project", "deployment:PROJECT")
    rendered = subprocess.run(
        [BIN / "kubectl", "kustomize", f"deploy/kubernetes/overlays/{overlay}"],
        cwd=project.root, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    (project.root / f"{overlay}.yaml").write_text(rendered)
    validated = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION,
         f"{overlay}.yaml"],
        cwd=project.root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    documents = list(yaml.safe_load_all(rendered))
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    pod = deployments["parcel"]["spec"]["template"]["spec"]
    step = pod["initContainers"][1]
    gateway = deployments["gateway"]["spec"]["template"]["spec"]

    assert {d["metadata"].get("namespace") for d in documents} == {"parcel", None}
    assert [c["name"] for c in pod["initContainers"]] == ["schema", "load-depots"]
    assert step["command"] == ["sh", "-c", 'exec python -m parcel_depots --from "$DEPOTS_URL"']
    env = {e["name"]: e for e in step["env"]}
    assert env["DEPOTS_URL"]["value"] == "https://depots.example/v1"
    assert env["DEPOTS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "parcel-depots", "key": "token"}  # fmt: skip
    image = {"dev": "localhost/parcel:latest", "prod": "parcel:1.2.0"}[overlay]
    assert {c["image"] for c in [*pod["containers"], *pod["initContainers"]]} == {image}
    assert [c["name"] for c in gateway["containers"]] == ["envoy"]  # no federation gateway
    # No service reads the alerts: only Prometheus may reach Alertmanager (never a rule with no
    # peers, which would let every pod in).
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    assert [rule["from"] for rule in policies["alertmanager"]["spec"]["ingress"]] == [
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
          "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]]  # fmt: skip
    assert validated.returncode == 0, validated.stdout + validated.stderr
