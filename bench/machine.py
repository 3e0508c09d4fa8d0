"""How fast this machine runs Python right now: a reference to read other figures against.

Figures on the project's machines drift with their load from day to day (measured: the same
bench 2.5x slower on one day than the day before, for every path alike); printing this beside
them tells a slow machine from a slow change.
"""

from __future__ import annotations

import time


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
