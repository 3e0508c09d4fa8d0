"""A scratch copy of this checkout, for the tests that change a project as a developer does
(`python -m ordermesh new-service`, docs/tutorial.md): its files (tracked and new, not ignored),
this checkout's virtualenv and npm tools linked in, its own code first on the path; `make` run
with this checkout's tools and without reinstalling them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What `make` would install before `make gen` is installed here: never remade in the copy.
INSTALLED = (
    ".venv/.installed",
    "tools/node/node_modules/.installed",
    "gateway/graphql/node_modules/.installed",
)
MAKE = (f"BIN={BIN}", *(f"--old-file={f}" for f in INSTALLED))


def scratch_copy(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    for linked in ("tools/node/node_modules", "gateway/graphql/node_modules"):
        (target / linked).symlink_to(ROOT / linked)
    (target / ".venv").symlink_to(BIN.parent)
    return target


def run(project: Path, *command: str, timeout: float = 600) -> str:
    """Runs `command` in the copy (a `make` with this checkout's tools); its output, or a
    failure with it."""
    if command[0] == "make":
        command = (*command, *MAKE)
    env = {**os.environ, "PYTHONPATH": f"{project}:{project / 'gen'}"}
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, f"{' '.join(command)}:\n{output}"
    return done.stdout
