"""A site's static files (its stylesheet, htmx copied from npm, pinned), each served at a URL
that holds its content's hash, and named in pages with its integrity (SHA-384), so that a
browser runs exactly the file the site was built with, cached for good; never a CDN.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Asset", "load"]

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
    # Where its site is served (e.g. "/console").
    prefix: str

    @classmethod
    def of(cls, path: Path, prefix: str) -> Asset:
        body = path.read_bytes()
        return cls(
            name=path.name,
            body=body,
            content_type=TYPES[path.suffix],
            digest=hashlib.sha256(body).hexdigest()[:16],
            integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
            prefix=prefix,
        )

    @property
    def url(self) -> str:
        return f"{self.prefix}/static/{self.digest}/{self.name}"


def load(directory: Path, prefix: str) -> dict[str, Asset]:
    """The files of `directory` by name (read once, at start), for the site at `prefix`."""
    return {
        path.name: Asset.of(path, prefix)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in TYPES
    }
