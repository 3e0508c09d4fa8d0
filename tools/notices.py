"""`python -m tools.notices -o THIRD_PARTY_LICENSES.md` (`make gen`): the licences of what
ordermesh ships besides its own code, from the pins the builds use, so that the list is the one
of this commit's images:

- the application image (deploy/Containerfile): the Python packages of
  requirements.runtime.lock, each licence as its installed distribution states it (the SPDX
  expression of `License-Expression`, else a short `License` field, else its trove
  classifiers: the virtualenv holds the same versions, requirements.lock constrains both);
- the GraphQL federation gateway's image: the npm packages of gateway/graphql/package-lock.json
  (with the Node it runs on), each licence as the lock states it, else its package.json;
- the web pages' vendored assets (ordermesh.web's sites): the npm packages tools/web_assets.py
  copies from tools/node;
- the images the tests build from Debian's packages (deploy/images.py), and the slim Python
  image the application builds on by default: Debian packages, whose licences each image
  carries at /usr/share/doc/<package>/copyright (named here, not restated).

It fails when a shipped package states no licence at all, so that nothing ships unlisted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from tools.web_assets import ASSETS

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements.runtime.lock"
GRAPHQL = ROOT / "gateway" / "graphql"
NODE_TOOLS = ROOT / "tools" / "node"
IMAGES = ROOT / "deploy" / "images"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", re.MULTILINE)
INSTALLED = re.compile(r"apt-get install [^\\\n]*?--no-install-recommends((?:[^\n]*\\\n)*[^\n]*)")
# Trove classifiers' names for the licences they name, where no SPDX expression is given.
TROVE = {
    "Apache Software License": "Apache-2.0",
    "BSD License": "BSD",
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "The Unlicense (Unlicense)": "Unlicense",
}


class Unstated(ValueError):
    """A shipped package states no licence."""


def python_licence(name: str) -> str:
    """The licence a distribution states: SPDX expression, short License field, classifiers."""
    meta = metadata.metadata(name)
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    field = (meta.get("License") or "").strip()
    if field.upper() in ("UNKNOWN", "NONE"):
        field = ""
    if field and "\n" not in field and len(field) <= 60:
        return field
    trove = [
        c.rpartition(" :: ")[2]
        for c in meta.get_all("Classifier") or []
        if c.startswith("License :: ")
    ]
    named = sorted({TROVE.get(t, t) for t in trove if t != "OSI Approved"})
    if named:
        return " OR ".join(named)
    if field:  # a licence's whole text in the field: its first line names it
        return field.splitlines()[0].strip()[:60]
    raise Unstated(f"the Python package {name} states no licence")


def python_packages() -> Iterator[tuple[str, str, str]]:
    for name, version in PIN.findall(RUNTIME_LOCK.read_text()):
        installed = metadata.version(name)
        if installed != version:
            raise SystemExit(f"{name} {installed} is installed, the image pins {version}: make")
        yield name, version, python_licence(name)


def npm_licence(folder: Path, path: str, entry: dict[str, object]) -> str:
    """The licence the lock states for the package at `path`, else its package.json's."""
    stated = entry.get("license")
    if not stated:
        manifest = json.loads((folder / path / "package.json").read_text())
        stated = manifest.get("license") or manifest.get("licenses")
    if isinstance(stated, dict):
        stated = stated.get("type")
    if isinstance(stated, list):
        stated = " OR ".join(str(s.get("type", s) if isinstance(s, dict) else s) for s in stated)
    if not stated:  # only a licence file: its first line names it
        for file in sorted((folder / path).glob("LICEN[CS]E*")):
            first = next(line.strip() for line in file.read_text().splitlines() if line.strip())
            stated = f"{first[:60]} (its {file.name} file)"
            break
    if not stated:
        raise Unstated(f"the npm package {path} ({folder}) states no licence")
    return str(stated)


def npm_packages(folder: Path, only: set[str] | None = None) -> Iterator[tuple[str, str, str]]:
    """The packages a package-lock.json installs (not its development ones), or `only` those."""
    lock = json.loads((folder / "package-lock.json").read_text())
    for path, entry in sorted(lock["packages"].items()):
        if not path or entry.get("dev"):
            continue
        name = path.rpartition("node_modules/")[2]
        if only is not None and name not in only:
            continue
        yield name, str(entry.get("version", "")), npm_licence(folder, path, entry)


def debian_packages() -> dict[str, list[str]]:
    """Each test image's Debian packages, as its Containerfile installs them."""
    found = {}
    for containerfile in sorted(IMAGES.glob("*/Containerfile")):
        names: list[str] = []
        for block in INSTALLED.findall(containerfile.read_text()):
            words = block.replace("\\\n", " ").split("&&")[0].split()
            names += [w for w in words if not w.startswith("-")]
        if names:
            found[containerfile.parent.name] = names
    return found


def table(rows: Iterator[tuple[str, str, str]]) -> list[str]:
    out = ["| package | version | licence |", "|---|---|---|"]
    out += [f"| {name} | {version} | {licence} |" for name, version, licence in rows]
    return out


def document() -> str:
    lines = [
        "# Third-party licences",
        "",
        "<!-- generated by python -m tools.notices (make gen); do not edit -->",
        "",
        "ordermesh is licensed under the Apache License 2.0 (LICENSE). What it ships besides its",
        "own code, with the licence each package states, from this commit's pins:",
        "",
        "## The application image (deploy/Containerfile): Python packages",
        "",
        "From requirements.runtime.lock, on the slim Python image (Debian 12; its packages'",
        "licences are in the image, /usr/share/doc/<package>/copyright, and Python's own is the",
        "PSF-2.0).",
        "",
        *table(python_packages()),
        "",
        "## The GraphQL federation gateway's image (deploy/images/graphql): npm packages",
        "",
        "From gateway/graphql/package-lock.json (Hive Gateway and what it needs, with the Node it",
        "runs on).",
        "",
        *table(npm_packages(GRAPHQL)),
        "",
        "## The web pages' assets (the console and the storefront)",
        "",
        "Copied by tools/web_assets.py from tools/node's packages, served by the system itself.",
        "",
        *table(npm_packages(NODE_TOOLS, {package for package, _, _ in ASSETS})),
        "",
        "## The images the tests build from Debian's packages (deploy/images.py)",
        "",
        "Each on a Debian 12 base made with debootstrap; every package's licence is in the image",
        "at /usr/share/doc/<package>/copyright.",
        "",
        "| image | Debian packages it installs |",
        "|---|---|",
        *(f"| {image} | {', '.join(names)} |" for image, names in debian_packages().items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "THIRD_PARTY_LICENSES.md")
    args = parser.parse_args(argv)
    try:
        text = document()
    except Unstated as exc:
        print(f"notices: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
