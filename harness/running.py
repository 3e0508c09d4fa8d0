"""Where the system `make up` runs keeps its state, and what it leaves for the other commands
(`make status`, `make demo`, the browser tests) in `.build/run`: the addresses in `env`, the
process id of each process it runs in `processes`; `ORDERMESH_RUN_DIR` moves it (a test's own
run beside a developer's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from deploy.private import private_file

RUN_DIR = Path(
    os.environ.get("ORDERMESH_RUN_DIR") or Path(__file__).resolve().parent.parent / ".build" / "run"
)
ENV_FILE = RUN_DIR / "env"
PROCESSES_FILE = RUN_DIR / "processes"


def publish(values: Mapping[str, str]) -> None:
    """Writes the addresses (with their credentials) for this user only (mode 600)."""
    private_file(ENV_FILE, "".join(f"{name}={value}\n" for name, value in values.items()))


def published(run_dir: Path = RUN_DIR) -> dict[str, str]:
    """What the system running in `run_dir` published (empty if none runs)."""
    env_file = run_dir / ENV_FILE.name
    if not env_file.exists():
        return {}
    return dict(line.partition("=")[::2] for line in env_file.read_text().splitlines())


def setting(name: str) -> str | None:
    """`name` from the environment, else as the running system published it, else None."""
    if os.environ.get(name):
        return os.environ[name]
    return published().get(name)


def publish_processes(pids: Mapping[str, int]) -> None:
    """Writes each running process's name (an instance id: `order-2`; `envoy`, `prometheus`...)
    and process id, one per line, replacing the file at once (a reader never sees half)."""
    partial = PROCESSES_FILE.with_name(PROCESSES_FILE.name + ".new")
    private_file(partial, "".join(f"{name} {pid}\n" for name, pid in pids.items()))
    partial.replace(PROCESSES_FILE)


def processes(run_dir: Path = RUN_DIR) -> dict[str, int]:
    """The process id of each process the system running in `run_dir` runs, by name (empty if
    none runs). Each leads a process group of its own (harness.process): signal the group."""
    processes_file = run_dir / PROCESSES_FILE.name
    if not processes_file.exists():
        return {}
    pids = {}
    for line in processes_file.read_text().splitlines():
        name, _, pid = line.rpartition(" ")
        pids[name] = int(pid)
    return pids
