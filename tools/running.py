"""Where the system `make up` runs keeps its state, and the addresses it leaves for the other
commands (`make status`, `make demo`) in `.build/run/env`; `ORDERMESH_RUN_DIR` moves it (a
test's own run beside a developer's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from deploy.private import private_file

RUN_DIR = Path(
    os.environ.get("ORDERMESH_RUN_DIR") or Path(__file__).resolve().parent.parent / ".build" / "run"
)
ENV_FILE = RUN_DIR / "env"


def publish(values: Mapping[str, str]) -> None:
    """Writes the addresses (with their credentials) for this user only (mode 600)."""
    private_file(ENV_FILE, "".join(f"{name}={value}\n" for name, value in values.items()))


def setting(name: str) -> str | None:
    """`name` from the environment, else as the running system published it, else None."""
    if os.environ.get(name):
        return os.environ[name]
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
    return None
