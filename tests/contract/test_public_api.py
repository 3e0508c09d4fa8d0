"""The runtime's public API is what its modules declare (`__all__`) and nothing else: every
module of the runtime says what it exports, each name it lists exists, and everything the rest
of the repository imports from the runtime (the services, the generators, the tools, the
harness, the benches and the tests, as a user's project would) is a declared name or a
submodule. With `py.typed`, a user's type checker reads the same API. A name the runtime
stops exporting, or one used before it was declared, fails here."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime" / "src" / "ordermesh"
USERS = ("services", "gateway", "deploy", "monitoring", "tools", "harness", "bench", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def generated(path: Path) -> bool:
    """protoc's modules of the runtime's contracts and their packages (ordermesh.contracts'
    directories): their API is the contract's."""
    return path.parent != RUNTIME / "contracts" and RUNTIME / "contracts" in path.parents


MODULES = sorted(
    module_name(p) for p in RUNTIME.rglob("*.py") if p.name != "__main__.py" and not generated(p)
)


def test_the_runtime_is_typed():
    assert (RUNTIME / "py.typed").is_file()


@pytest.mark.parametrize("name", MODULES)
def test_each_module_declares_what_it_exports(name: str):
    module = importlib.import_module(name)
    declared = getattr(module, "__all__", None)
    assert isinstance(declared, list), f"{name} has no __all__"
    assert all(isinstance(n, str) for n in declared)
    missing = [n for n in declared if not hasattr(module, n)]
    assert not missing, f"{name} declares {missing}, which it does not have"


def imported_from_the_runtime() -> dict[tuple[str, str], str]:
    """(module, name) -> the first file outside the runtime that imports it."""
    found: dict[tuple[str, str], str] = {}
    for area in USERS:
        for path in sorted((ROOT / area).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.level == 0
                    and node.module
                    and (node.module == "ordermesh" or node.module.startswith("ordermesh."))
                ):
                    for alias in node.names:
                        found.setdefault((node.module, alias.name), str(path.relative_to(ROOT)))
    return found


def test_what_the_rest_imports_from_the_runtime_is_declared():
    undeclared = []
    for (name, imported), where in sorted(imported_from_the_runtime().items()):
        module = importlib.import_module(name)
        submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{name}.{imported}")
        if not submodule and imported not in getattr(module, "__all__", ()):
            undeclared.append(f"{name}.{imported} (imported by {where})")
    assert not undeclared, "imported but not in its module's __all__: " + ", ".join(undeclared)
