"""Pictures of runs (matplotlib, drawn to PNG files without a display), written next to the
figures a test or a bench prints, in REPORTS_DIR (default .build/reports).

- `timeline`: requests (or events) answered and failed per second over a run, with moments
  marked (the kills of the failover and broker cluster tests);
- `percentiles`: latency percentiles of each path of a bench, side by side;
- `over_time`: series of values over a run (latency percentiles), with the same marks.

Each is written to `directory` (REPORTS unless given).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none wanted
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["REPORTS", "over_time", "percentiles", "timeline"]

REPORTS = Path(
    os.environ.get("REPORTS_DIR") or Path(__file__).resolve().parent.parent / ".build" / "reports"
)
PERCENTILES = (50, 90, 99, 99.9)


def _saved(figure: Figure, name: str, directory: Path | None = None) -> Path:
    directory = directory or REPORTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def timeline(
    name: str,
    outcomes: Sequence[tuple[float, bool]],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str,
    unit: str = "requests",
    directory: Path | None = None,
) -> Path:
    """`outcomes`: (seconds since the start, answered?) of each request (or other `unit`);
    `marks`: (seconds, label) of what happened. Returns the PNG's path."""
    answered: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    for at, ok in outcomes:
        (answered if ok else failed)[int(at)] += 1
    # Whole seconds only: the last request, sent a little after its due time, would make a
    # last second of one request look like a collapse.
    seconds = range(int(max((at for at, _ in outcomes), default=0.0)))
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.plot(seconds, [answered[s] for s in seconds], label="answered", color="tab:green")
    axes.bar(seconds, [failed[s] for s in seconds], label="failed", color="tab:red", width=1.0)
    _mark(axes, marks)
    axes.set_xlabel("seconds")
    axes.set_ylabel(f"{unit} per second")
    axes.set_title(title)
    axes.legend(loc="lower left")
    return _saved(figure, name, directory)


def _mark(axes: Any, marks: Sequence[tuple[float, str]]) -> None:
    for at, label in marks:
        axes.axvline(at, color="tab:gray", linestyle="--", linewidth=0.8)
        axes.annotate(label, (at, axes.get_ylim()[1]), rotation=90, va="top", ha="right",
                      fontsize=7, color="tab:gray")  # fmt: skip


def over_time(
    name: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    marks: Sequence[tuple[float, str]] = (),
    title: str,
    unit: str = "ms",
    log: bool = False,
    directory: Path | None = None,
) -> Path:
    """Each of `series`: (seconds since the start, value) points, as a line, on a logarithmic
    axis with `log` (milliseconds and seconds on one picture); `marks` as in `timeline`.
    Returns the PNG's path."""
    figure, axes = plt.subplots(figsize=(10, 4))
    for label, points in series.items():
        axes.plot([t for t, _ in points], [v for _, v in points], label=label)
    if log:
        axes.set_yscale("log")
    _mark(axes, marks)
    axes.set_xlabel("seconds")
    axes.set_ylabel(unit)
    axes.set_title(title)
    axes.legend(loc="upper left")
    return _saved(figure, name, directory)


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def percentiles(name: str, latencies_ms: Mapping[str, Sequence[float]], *, title: str) -> Path:
    """Bars of p50, p90, p99 and p99.9 for each path (its latencies in ms). Returns the PNG."""
    figure, axes = plt.subplots(figsize=(10, 4))
    paths = list(latencies_ms)
    width = 0.8 / len(PERCENTILES)
    for i, p in enumerate(PERCENTILES):
        heights = [_percentile(sorted(latencies_ms[path]), p) for path in paths]
        positions = [n + (i - (len(PERCENTILES) - 1) / 2) * width for n in range(len(paths))]
        axes.bar(positions, heights, width=width, label=f"p{p:g}")
    axes.set_xticks(range(len(paths)), paths)
    axes.set_ylabel("ms")
    axes.set_title(title)
    axes.legend()
    return _saved(figure, name)
