"""`python -m tools.web_assets` (part of `make gen`): the web sites' third-party assets (the
operator console's, the storefront's), copied byte for byte from the npm packages
tools/node/package-lock.json pins into each site's static/, where it serves them under their
content's hash (ordermesh.web.assets). Never a CDN.

It refuses an installed package whose version is not the one package.json pins (run `npm ci`
in tools/node, as `make gen` does first). `--check` changes nothing and fails if a copy is not
what the pinned package holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "tools" / "node"
# Each site's static files, where its pages are served from.
SITES = (ROOT / "services" / "console" / "static", ROOT / "services" / "storefront" / "static")
# The package, the file of it, the name it is served as.
ASSETS = (("htmx.org", "dist/htmx.min.js", "htmx.min.js"),)


def _source(package: str, path: str) -> Path:
    pinned = json.loads((NODE / "package.json").read_text())["dependencies"][package]
    installed = NODE / "node_modules" / package
    try:
        version = json.loads((installed / "package.json").read_text())["version"]
    except FileNotFoundError:
        raise SystemExit(f"{package} is not installed in {NODE}: run `npm ci` there") from None
    if version != pinned:
        raise SystemExit(
            f"{package} {version} is installed in {NODE}, package.json pins {pinned}: run `npm ci`"
        )
    return installed / path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a copy is stale")
    args = parser.parse_args(argv)
    stale = []
    for package, path, name in ASSETS:
        body = _source(package, path).read_bytes()
        for static in SITES:
            target = static / name
            if target.exists() and target.read_bytes() == body:
                continue
            stale.append(str(target.relative_to(ROOT)))
            if not args.check:
                target.write_bytes(body)
                print(f"{target.relative_to(ROOT)}: {package}/{path}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}: run `make gen`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
