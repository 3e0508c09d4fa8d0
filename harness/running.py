"""Where the system `make up` runs keeps its state, and what it leaves for the other commands
(`make status`, `make demo`, the browser tests) in `.build/run`: the addresses in `env`, the
process id of each process it runs in `processes`; `ORDERMESH_RUN_DIR` moves it (a test's own
run beside a developer's). `make_up` starts that system as a user does, for the benches and the
browser tests."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from deploy.private import private_file
from harness.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("ORDERMESH_RUN_DIR") or ROOT / ".build" / "run")
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


# What `make up` prints once everything runs, and the admin it made (printed once).
READY = "Ctrl-C stops"
ADMIN = re.compile(r"^admin: (\S+) / (\S+) \(printed once", re.M)


@contextlib.contextmanager
def make_up(
    instances: int,
    *,
    store: str = "sqlite",
    env: Mapping[str, str] | None = None,
    directory: Path | None = None,
) -> Iterator[tuple[ManagedProcess, Path]]:
    """`make up` (`python -m tools.up`) with its own run directory (in `directory`, else a
    temporary one) and free ports, as a user runs it, `env` added to its environment (the
    services inherit it); yields it once it is ready, and its run directory (`published` reads
    what it published there); stopped on exit."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="up-")))
        run_dir = directory / "run"
        environment = {
            "ORDERMESH_RUN_DIR": str(run_dir),
            # tools and harness are not installed packages: run them from the checkout.
            "PYTHONPATH": str(ROOT),
            "GATEWAY_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "ALERTMANAGER_PORT": str(free_port()),
            **(env or {}),
        }
        command = ["-m", "tools.up", "--instances", str(instances), "--store", store]
        up = ManagedProcess(
            "up",
            [sys.executable, *command],
            directory=directory,
            env=environment,
            ready=lambda: READY in up.log_path.read_text(errors="replace"),
            ready_timeout_s=600.0,
            stop_timeout_s=120.0,
        )
        up.start()
        try:
            yield up, run_dir
        finally:
            up.stop()
