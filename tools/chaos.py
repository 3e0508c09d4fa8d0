"""Faults a person causes by hand in a running system, from another terminal, to watch it cope
(`make status`, the console, Prometheus). In the system `make up` runs:

    .venv/bin/python -m tools.chaos list                 # what runs, by name, with its pid
    .venv/bin/python -m tools.chaos kill order-1         # SIGKILL, as a crash; make up restarts it
    .venv/bin/python -m tools.chaos pause rabbitmq 20    # SIGSTOP for 20 s, then SIGCONT

and in a compose stack (`make compose-up`; the project `ordermesh` unless named), through the
engine on DOCKER_HOST (Docker's, or `podman system service`):

    .venv/bin/python -m tools.chaos --compose list
    .venv/bin/python -m tools.chaos --compose kill ordermesh-order-1   # its restart policy applies
    .venv/bin/python -m tools.chaos --compose pause ordermesh-redis-1 20   # frozen, then thawed

It acts only on what `make up` published as its own (harness/running.py, .build/run/processes:
each a process group of its own) or on the containers labelled as the compose project's: the
machine's own RabbitMQ, Redis or PostgreSQL are never touched. A pause is a process that stops
answering without closing its connections (a stalled broker, a frozen VM), which clients
notice only by their timeouts; Ctrl-C or SIGTERM ends the pause at once, the process resumed
(only a SIGKILL of this command would leave it stopped: `kill -CONT` it, or unpause the
container, then). The service switches (a slow or failing RPC, a failing handler, the gateway's
latency and aborts) are `python -m ordermesh.switches` and the console's page of faults.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Iterable
from typing import Protocol

from harness import running
from tools.containers import Engine, EngineError

__all__ = ["Containers", "Processes", "Refused", "Target", "main"]

# The longest pause: a broker stopped for longer is an outage, not a fault to watch.
MOST_S = 300
# How long a process may take to be seen stopped after its SIGSTOP.
STOPPED_WITHIN_S = 5.0
PROJECT = "ordermesh"  # compose.yaml's name


class Refused(Exception):
    """What was asked cannot be done (no such process, it is gone, the engine refused)."""


class Target(Protocol):
    def listing(self) -> list[str]: ...
    def instances(self, services: Iterable[str]) -> dict[str, list[str]]: ...
    def crash(self, name: str) -> str: ...
    def stop(self, name: str) -> str: ...
    def resume(self, name: str) -> None: ...


def _state(pid: int) -> str:
    """The kernel's letter for the process's state (T: stopped); empty once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return ""


class Processes:
    """The processes `make up` runs, each a process group: signals to the group."""

    def listing(self) -> list[str]:
        return [f"{name} {pid}" for name, pid in sorted(running.processes().items())]

    def instances(self, services: Iterable[str]) -> dict[str, list[str]]:
        """The names of each service's instances (`order-1`, `order-2`...)."""
        names = running.processes()
        return {
            s: sorted(n for n in names if re.fullmatch(rf"{re.escape(s)}-\d+", n)) for s in services
        }

    def _pid(self, name: str) -> int:
        pid = running.processes().get(name)
        if pid is None:
            known = ", ".join(sorted(running.processes())) or "none: is `make up` running?"
            raise Refused(f"no process named {name!r} in {running.PROCESSES_FILE} ({known})")
        return pid

    def _signal(self, name: str, signum: signal.Signals) -> int:
        pid = self._pid(name)
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            raise Refused(f"process {pid} is gone (make up may be restarting it)") from None
        return pid

    def crash(self, name: str) -> str:
        return f"{name} (pid {self._signal(name, signal.SIGKILL)}) killed; make up starts it again"

    def stop(self, name: str) -> str:
        """Stops it, and says so once the kernel has: a signal is delivered when the process
        next runs, and on a busy machine that is not at once (seen in CI: still running just
        after the SIGSTOP)."""
        pid = self._signal(name, signal.SIGSTOP)
        deadline = time.monotonic() + STOPPED_WITHIN_S
        while _state(pid) not in ("T", ""):
            if time.monotonic() > deadline:
                raise Refused(f"process {pid} did not stop within {STOPPED_WITHIN_S:g} s")
            time.sleep(0.01)
        return f"{name} (pid {pid})"

    def resume(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)


class Containers:
    """The containers of a compose project, through the engine's API."""

    def __init__(self, project: str):
        self._engine = Engine(project)

    def listing(self) -> list[str]:
        return [f"{c.name} {c.state}" for c in self._engine.containers()]

    def instances(self, services: Iterable[str]) -> dict[str, list[str]]:
        """The names of each service's running containers."""
        running_now = [c for c in self._engine.containers() if c.state == "running"]
        return {s: [c.name for c in running_now if c.service == s] for s in services}

    def crash(self, name: str) -> str:
        pid = self._engine.crash(name)
        return f"{name} (pid {pid}) killed; its restart policy starts it again"

    def stop(self, name: str) -> str:
        self._engine.pause(name)
        return f"{name} (container)"

    def resume(self, name: str) -> None:
        self._engine.unpause(name)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pause(target: Target, name: str, seconds: float) -> None:
    signal.signal(signal.SIGTERM, _interrupted)  # resumed as on Ctrl-C
    stopped = target.stop(name)
    print(f"{stopped} paused for {seconds:g} s; Ctrl-C resumes it now", flush=True)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        target.resume(name)
    print(f"{stopped} resumed", flush=True)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--compose",
        nargs="?",
        const=PROJECT,
        metavar="PROJECT",
        help=f"act on a compose project's containers ({PROJECT} unless named), not make up's",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="what runs, by name")
    kill = commands.add_parser("kill", help="kill as a crash would (it is started again)")
    kill.add_argument("name", help="as `list` names it: order-1, rabbitmq, redis, envoy...")
    paused = commands.add_parser("pause", help="stop a process or container for a while")
    paused.add_argument("name", help="as `list` names it")
    paused.add_argument("seconds", type=float, help=f"how long (at most {MOST_S})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    target: Target = Containers(args.compose) if args.compose else Processes()
    try:
        if args.command == "list":
            for line in target.listing():
                print(line)
        elif args.command == "kill":
            print(target.crash(args.name), flush=True)
        elif not 0 < args.seconds <= MOST_S:
            print(f"a pause lasts more than 0 and at most {MOST_S} s", file=sys.stderr)
            return 2
        else:
            pause(target, args.name, args.seconds)
    except (Refused, EngineError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
