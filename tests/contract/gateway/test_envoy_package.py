"""The Envoy generator is a package of one module per Envoy concept (ordermesh.gateway.envoy): each
imports its siblings, never the package itself, and no import circle forms among them."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import ordermesh.gateway.envoy

PACKAGE = Path(ordermesh.gateway.envoy.__file__).parent


def _sibling_imports() -> dict[str, set[str]]:
    """For each module of the package, the modules of the package it imports."""
    imports: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        imports[path.stem] = {
            name.removeprefix("ordermesh.gateway.envoy.")
            for name in imported
            if name == "ordermesh.gateway.envoy" or name.startswith("ordermesh.gateway.envoy.")
        }
    return imports


def test_the_modules_of_the_envoy_package_import_siblings_never_the_package():
    importers = [
        module for module, names in _sibling_imports().items() if "ordermesh.gateway.envoy" in names
    ]
    assert importers == []


def test_the_modules_of_the_envoy_package_form_no_import_circle():
    imports = _sibling_imports()
    try:
        TopologicalSorter(imports).prepare()
    except CycleError as circle:
        raise AssertionError(
            f"an import circle in ordermesh.gateway.envoy: {circle.args[1]}"
        ) from None
    assert imports["names"] == set()  # the ground floor


def test_the_package_exports_what_its_modules_define():
    assert all(hasattr(ordermesh.gateway.envoy, name) for name in ordermesh.gateway.envoy.__all__)
