"""Keeps processes running: one that exits without being stopped is started again, with backoff.

The runner (`make up`) and the failover tests watch their processes with a Supervisor. A
process that exits (crash, SIGKILL) is started again after a delay that doubles with each
consecutive exit (`min_backoff_s` up to `max_backoff_s`), and resets once the process has run
for `stable_s`. Each restart runs in a thread of its own, so a slow start never delays the
restart of another process. Stop the supervisor before stopping what it watches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from harness.process import ManagedProcess, NotReady

__all__ = ["Supervisor"]


@dataclass
class _Watched:
    process: ManagedProcess
    backoff_s: float
    started_at: float
    restarts: int = 0
    restarting: bool = False


class Supervisor:
    def __init__(
        self,
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        poll_s: float = 0.2,
        log: bool = True,
    ):
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_s = stable_s
        self._poll_s = poll_s
        self._log = log
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def watch(self, process: ManagedProcess) -> None:
        with self._lock:
            self._watched.append(_Watched(process, self._min_backoff_s, time.monotonic()))

    def unwatch(self, process: ManagedProcess) -> None:
        """Stops watching `process` (to stop it for good: a rolling restart replaced it)."""
        with self._lock:
            self._watched = [w for w in self._watched if w.process is not process]

    def restarts(self, process: ManagedProcess) -> int:
        with self._lock:
            return next(w.restarts for w in self._watched if w.process is process)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops restarting (what it watches keeps running)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_s):
            with self._lock:
                for watched in self._watched:
                    if watched.restarting or watched.process.running:
                        continue
                    if time.monotonic() - watched.started_at >= self._stable_s:
                        watched.backoff_s = self._min_backoff_s
                    watched.restarting = True
                    threading.Thread(
                        target=self._restart, args=(watched,), name="restart", daemon=True
                    ).start()

    def _restart(self, watched: _Watched) -> None:
        delay_s = watched.backoff_s
        watched.backoff_s = min(watched.backoff_s * 2, self._max_backoff_s)
        if self._log:
            print(f"{watched.process.name} exited; starting it again in {delay_s:g} s", flush=True)
        if self._stopping.wait(delay_s):
            return
        try:
            watched.process.start()
        except NotReady as exc:
            if self._log:
                print(f"{watched.process.name} did not start: {str(exc)[:500]}", flush=True)
        with self._lock:
            watched.restarts += 1
            watched.started_at = time.monotonic()
            watched.restarting = False
