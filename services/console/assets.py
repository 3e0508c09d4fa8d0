"""The console's static files (static/: htmx from npm, pinned, and its own CSS), each served at a
URL that holds its content's hash, and named in pages with its integrity (SHA-384), so that a
browser runs exactly the file the console was built with, cached for good; never a CDN.

htmx.min.js is copied from tools/node's pinned `htmx.org` by `python -m tools.console_assets`
(part of `make gen`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.console.security import PREFIX

__all__ = ["STATIC", "Asset", "load"]

STATIC = Path(__file__).parent / "static"
TYPES: Mapping[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    # The first 16 hex digits of its SHA-256: part of its URL.
    digest: str
    # What a <script> or <link> names it with (Subresource Integrity).
    integrity: str

    @classmethod
    def of(cls, path: Path) -> Asset:
        body = path.read_bytes()
        return cls(
            name=path.name,
            body=body,
            content_type=TYPES[path.suffix],
            digest=hashlib.sha256(body).hexdigest()[:16],
            integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
        )

    @property
    def url(self) -> str:
        return f"{PREFIX}/static/{self.digest}/{self.name}"


def load(directory: Path = STATIC) -> dict[str, Asset]:
    """The files of `directory` by name (read once, at start)."""
    return {
        path.name: Asset.of(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in TYPES
    }
