"""A child process that this code started and alone ends: start, wait until ready, stop, kill.

The child runs in its own session (so a signal to the shell that started the tests does not
reach it, and its own children share its process group), writes its output to a log file in
its directory, and is ended only through its own process group, never by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["ManagedProcess", "NotReady", "accepts", "answers_ok", "as_user", "free_port"]


class NotReady(RuntimeError):
    """The process did not become ready in time, or exited; the message ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def as_user(argv: Sequence[str], user: str | int | None) -> list[str]:
    """`argv` run as `user` (a name or a uid; None: as this process) through util-linux's
    `setpriv`, which sets the real and effective uid as subprocess's `user=` does. Not `user=`
    itself: it makes Python fork() instead of vfork(), and a fork() runs gRPC's fork handlers,
    after which a child forked while this process's gRPC threads are busy can die of SIGSEGV
    before it execs (CI: "initdb died with SIGSEGV"; tests/integration/test_harness.py shows
    it). GRPC_ENABLE_FORK_SUPPORT=0 would turn the handlers off too, but only when set before
    grpc is first imported, which no one module of a test or bench process controls."""
    if user is None:
        return list(argv)
    uid = user if isinstance(user, int) else pwd.getpwnam(user).pw_uid
    return ["setpriv", f"--reuid={uid}", "--", *argv]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def answers_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a GET of `url` answers 200 (a readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        directory: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        user: str | int | None = None,
    ):
        """`user`: run as this user, a name or a uid (when this process is root and the
        program refuses root, or its traffic must be told apart)."""
        self.name = name
        self._user = user
        self.argv = list(argv)
        self.directory = directory
        self.log_path = directory / f"{name}.log"
        self._ready = ready
        self._env = {**os.environ, **(env or {})}
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Starts the process and returns once it is ready; raises NotReady otherwise."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                as_user(self.argv, self._user),
                cwd=self.directory,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise NotReady(f"{self.name} exited with {self._exit_code()}:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        self.kill()
        raise NotReady(f"{self.name} not ready in {self._ready_timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Graceful stop: SIGTERM, then SIGKILL if it has not exited in time."""
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        try:
            self._wait(self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    @staticmethod
    def stop_all(processes: Iterable[ManagedProcess]) -> None:
        """Graceful stop of several at once: SIGTERM to each, then each waited for (SIGKILL
        past its timeout), so that their drains overlap instead of adding up (a whole system's
        teardown took 10 s one after another)."""
        running = [process for process in processes if process.running]
        for process in running:
            process._signal(signal.SIGTERM)
        for process in running:
            try:
                process._wait(process._stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()

    def kill(self) -> None:
        """SIGKILL to the process and its children, as a crash would; reaps it."""
        if not self.running:
            return
        self._signal(signal.SIGKILL)
        self._wait(self._stop_timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        # The process group is the session this code created for the child.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def _wait(self, timeout_s: float) -> None:
        assert self._process is not None
        self._process.wait(timeout_s)

    def _exit_code(self) -> int | None:
        return self._process.returncode if self._process is not None else None
