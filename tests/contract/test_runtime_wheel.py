"""The runtime as a user installs it: its wheel (`make wheel`) holds the `ordermesh` package and
nothing of the example shop, says what it needs, and works installed alone into a fresh
virtualenv: its modules, its own contracts and its command import from there."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import ordermesh
import pytest

from deploy.images import runtime_wheel

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return runtime_wheel(tmp_path_factory.mktemp("dist"))


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
    assert sorted(metadata.get_all("Requires-Dist")) == sorted(
        r.replace(" ", "") for r in PROJECT["dependencies"]
    )


def test_installed_alone_it_imports_and_runs_its_command(wheel: Path, tmp_path: Path):
    """A fresh virtualenv with the wheel installed; its dependencies are the test run's (this
    machine installs nothing from an index), but not the repository's own packages."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    subprocess.run([*pip, "install", "--no-deps", "--no-index", wheel], env=clean, check=True)
    # The dependencies as a path of their own: the repository's editable installs (their .pth
    # files) are not read from it.
    dependencies = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**clean, "PYTHONPATH": dependencies}
    check = (
        "import importlib.metadata, importlib.util, ordermesh, ordermesh.grpc, ordermesh.runtime\n"
        "from ordermesh.contracts.ops.v1 import ops_service_pb2_grpc\n"
        "from ordermesh.contracts.common.v1 import options_pb2\n"
        "print(ordermesh.__file__)\n"
        "print(importlib.metadata.version('ordermesh'))\n"
        "print([m for m in ('services', 'gen', 'common', 'ops', 'user', 'harness')"
        " if importlib.util.find_spec(m)])\n"
    )

    def run(*args: str | Path) -> str:
        done = subprocess.run(
            [python, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    found = run("-c", check).splitlines()
    usage = run("-m", "ordermesh", "new-service", "--help")

    assert Path(found[0]).is_relative_to(target)
    assert found[1:] == [ordermesh.__version__, "[]"]
    assert "new-service" in usage
