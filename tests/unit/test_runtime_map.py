"""The runtime's map (runtime/src/ordermesh/__init__.py's docstring) names every module of the
runtime and of its deploy, gateway, store and web packages, once, and nothing else: a module
added without its line, or a line left behind by a module that went, fails here (as httpx tests
its `__all__`)."""

import pkgutil

import ordermesh
import ordermesh.deploy
import ordermesh.gateway
import ordermesh.store
import ordermesh.web


def _mapped() -> list[str]:
    """The first word of each line of the map (after the opening sentence); a description
    that runs on to a second line is indented."""
    _, table = (ordermesh.__doc__ or "").split("\n\n", 1)
    return [line.split()[0] for line in table.splitlines() if line and not line[0].isspace()]


def _modules() -> set[str]:
    found = {module.name for module in pkgutil.iter_modules(ordermesh.__path__)}
    return found | {
        f"{package.__name__.removeprefix('ordermesh.')}.{module.name}"
        for package in (ordermesh.deploy, ordermesh.gateway, ordermesh.store, ordermesh.web)
        for module in pkgutil.iter_modules(package.__path__)
    }


def test_the_map_names_every_module_of_the_runtime():
    missing = _modules() - set(_mapped())

    assert not missing, (
        f"add a line for each to runtime/src/ordermesh/__init__.py: {sorted(missing)}"
    )


def test_the_map_names_no_module_that_is_not_there():
    assert set(_mapped()) <= _modules()


def test_the_map_names_each_module_once():
    mapped = _mapped()

    assert len(mapped) == len(set(mapped))
