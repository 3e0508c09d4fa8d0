"""The web sites' pages and their assets (services/console/ and services/storefront/:
templates, static; no Python) reach every place the sites run from: the project's wheel
(pyproject.toml's package data) and the container image (deploy/Containerfile copies services/
from a build context that .dockerignore narrows), where they are read from beside the sites'
modules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from ordermesh.web import assets

from services import catalogue
from services.console import pages as console
from services.storefront import web as storefront

ROOT = Path(__file__).resolve().parents[2]
# Each site's static files and prefix, as its main loads them.
SITES = {
    "console": (console.STATIC, console.PREFIX),
    "storefront": (storefront.STATIC, storefront.PREFIX),
}
# What a site reads at run time besides its modules.
DATA = ("templates/*.html", "static/*")


def _data_files(site: str | None = None) -> list[str]:
    found = sorted(
        str(path.relative_to(ROOT))
        for name in ([site] if site else SITES)
        for pattern in DATA
        for path in (ROOT / "services" / name).glob(pattern)
        if path.is_file()
    )
    assert any(f.endswith(".html") for f in found), "no templates: the test would prove nothing"
    assert any("/static/" in f for f in found), "no static files: the test would prove nothing"
    return found


def test_every_service_with_web_pages_is_checked_here():
    assert {service.name for service in catalogue.CATALOGUE.web_services()} == set(SITES)


@pytest.mark.parametrize("site", SITES)
def test_the_assets_are_read_from_beside_the_sites_modules(site):
    static, prefix = SITES[site]
    assert Path(static) == ROOT / "services" / site / "static"
    assert set(assets.load(static, prefix)) == {
        Path(f).name for f in _data_files(site) if "/static/" in f
    }


def test_the_wheel_carries_the_sites_templates_and_static_files(tmp_path):
    """Built from a copy of the packages (never in the checkout: no build/ nor egg-info there),
    with the project's pyproject.toml."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for package in ("services", "gen"):
        shutil.copytree(
            ROOT / package,
            project / package,
            ignore=shutil.ignore_patterns("__pycache__", "node_modules"),
        )
    build = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [f for f in _data_files() if f not in names]
    assert not missing, f"not in the wheel: {missing}"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's `patterns` leave `path` out of the build context: the last
    pattern matching it or one of its parent directories decides (`!` keeps it)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        expression = _glob(pattern.removeprefix("!").strip("/"))
        if any(expression.fullmatch(candidate) for candidate in candidates):
            ignored = not keep
    return ignored


def _glob(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `**` any number of directories, `*` and `?` within one."""
    out = ""
    for piece in re.split(r"(\*\*/?|\*|\?)", pattern):
        if piece.startswith("**"):
            out += "(?:.*/)?" if piece.endswith("/") else ".*"
        elif piece == "*":
            out += "[^/]*"
        elif piece == "?":
            out += "[^/]"
        else:
            out += re.escape(piece)
    return re.compile(out)


@pytest.mark.parametrize(
    ("path", "ignored"),
    [("services/user/main.py", False), ("tests/unit/x.py", True),
     ("services/x/__pycache__/a.pyc", True), ("gateway/graphql/node_modules/a.js", True)],
)  # fmt: skip
def test_the_build_context_check_reads_dockerignore_as_docker_does(path, ignored):
    patterns = _dockerignore()
    assert _ignored(path, patterns) == ignored


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_carries_the_sites_templates_and_static_files():
    """In the build context, and copied where the sites' modules are (PYTHONPATH=/app)."""
    patterns = _dockerignore()
    left_out = [f for f in _data_files() if _ignored(f, patterns)]
    assert not left_out, f".dockerignore leaves them out of the image: {left_out}"
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    assert "COPY services /app/services" in containerfile
    assert "COPY --from=build /app /app" in containerfile
    assert re.search(r"PYTHONPATH=/app[:\s]", containerfile)
