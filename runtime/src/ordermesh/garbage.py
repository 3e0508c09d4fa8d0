"""The garbage collector as a service runs it: what the process built to start kept out of its
passes, and how long each pass stopped the process, as Prometheus metrics.

A pass of Python's collector stops the thread that triggered it, and with it the event loop:
a message that arrives meanwhile waits. `keep_startup_objects` takes the process's startup
objects (about 110,000 in a service) out of the full passes for good (`gc.freeze`), and
`Collections` measures every pass from the collector's own callbacks (`gc.callbacks`), so an
operator sees the pauses a service pays under its real load (`ordermesh_gc_pause_seconds`, by
generation) and how many objects are frozen (`ordermesh_gc_frozen_objects`).
"""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["PAUSE_BUCKETS", "Collections", "keep_startup_objects"]

# From a young generation's pass (tens of microseconds) to a full pass over a process that
# froze nothing (74-87 ms measured in a service, docs/performance.md).
PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
GENERATIONS = 3


def keep_startup_objects() -> None:
    """Moves what the process holds once started (its modules, descriptors and wiring: about
    110,000 objects in a service) out of the garbage collector's sight for good (`gc.freeze`),
    after collecting what starting left behind. Every full collection walked them all: 74-87 ms
    each (measured), the event loop stopped for as long, a hop of an order in flight delayed by
    as much (docs/performance.md). They live as long as the process anyway."""
    gc.collect()
    gc.freeze()


class Collections(Collector):
    """Every pass of the garbage collector timed while `watch()`ed, as a histogram per
    generation, read when Prometheus scrapes. The callback does no more than count into plain
    lists (no lock, nothing a pass could wait for): it runs at every pass, hundreds a second
    under load."""

    def __init__(self) -> None:
        self._counts = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(GENERATIONS)]
        self._sums = [0.0] * GENERATIONS
        self._started = 0.0
        self._watching = False

    def watch(self) -> None:
        if not self._watching:
            gc.callbacks.append(self._callback)
            self._watching = True

    def unwatch(self) -> None:
        if self._watching:
            gc.callbacks.remove(self._callback)
            self._watching = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self._counts[generation][bisect.bisect_left(PAUSE_BUCKETS, seconds)] += 1
        self._sums[generation] += seconds

    def collect(self) -> Iterator[Metric]:
        frozen = GaugeMetricFamily(
            "ordermesh_gc_frozen_objects",
            "Objects kept out of the garbage collector's passes since start (ordermesh.garbage)",
            value=gc.get_freeze_count(),
        )
        yield frozen
        pauses = HistogramMetricFamily(
            "ordermesh_gc_pause_seconds",
            "How long each pass of the garbage collector stopped the process, by generation",
            labels=["generation"],
        )
        for generation in range(GENERATIONS):
            counts, total = self._counts[generation], 0
            buckets = []
            for bound, count in zip((*PAUSE_BUCKETS, float("inf")), counts, strict=True):
                total += count
                buckets.append((_bound(bound), total))
            pauses.add_metric([str(generation)], buckets, self._sums[generation])
        yield pauses


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
