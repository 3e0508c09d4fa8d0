"""What every bench shares: how fast this machine runs Python right now (a reference to read
other figures against), the settings the system runs at, and the CPU processes have used.

Figures on the project's machines drift with their load from day to day (measured: the same
bench 2.5x slower on one day than the day before, for every path alike); printing this beside
them tells a slow machine from a slow change.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# The log level the services ship with (ordermesh.config), and so what the benches run at:
# at INFO each RPC and each handled message leaves a line.
LOG_LEVEL = "INFO"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """`--log-level`, the services' LOG_LEVEL; by default what the system ships with."""
    parser.add_argument(
        "--log-level", default=LOG_LEVEL, help=f"the services' LOG_LEVEL (default {LOG_LEVEL})"
    )


def reference_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (3 million additions); the best of five."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def cpu_s(pids: list[int], *, with_children: bool = False) -> float:
    """CPU seconds (user + system) these processes (and their children) have used so far."""
    if with_children:
        pids = pids + [child for pid in pids for child in _children(pid)]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS
