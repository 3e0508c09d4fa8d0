"""Files only their owner can read: the secrets, keys and passwords written to disk by the
local CA (deploy.ca), `make up` and the test systems' private processes."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_file"]


def private_file(path: Path, text: str) -> Path:
    """Writes `text` to `path`, readable and writable by its owner only (mode 600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)
    return path
