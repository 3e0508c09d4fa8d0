"""A verification's report: the claims with their values and what was found wrong, the run's
settings and faults, and its pictures (orders answered and failed per second with the kills
and the services' failures marked; the orders' answer time and the messages' age, p50 and
p99, over the run), as one HTML page beside its PNG files (Jinja2, autoescaped), and the same
claims as lines on the terminal."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2

from harness import charts
from tools.verify.claims import Claim
from tools.verify.faults import Kill, Switching
from tools.verify.orders import Order

__all__ = ["lines", "order_percentiles", "write"]

WINDOW_S = 5.0

PAGE = Path(__file__).with_name("report.html")


def lines(claims: Sequence[Claim]) -> list[str]:
    out = []
    for claim in claims:
        out.append(f"{'PASS' if claim.passed else 'FAIL'}  {claim.name}: {claim.value}")
        out += [f"      {p}" for p in claim.problems]
    return out


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def order_percentiles(orders: Sequence[Order]) -> dict[str, list[tuple[float, float]]]:
    """p50 and p99 of PlaceOrder's answer time (ms) over each WINDOW_S of sending."""
    windows: dict[int, list[float]] = {}
    for order in orders:
        if order.status == 200:
            windows.setdefault(int(order.sent_s // WINDOW_S), []).append(order.latency_ms)
    return {
        f"orders p{p}": [
            ((w + 0.5) * WINDOW_S, _percentile(v, p)) for w, v in sorted(windows.items())
        ]
        for p in (50, 99)
    }


def write(
    directory: Path,
    *,
    run: Mapping[str, Any],
    claims: Sequence[Claim],
    orders: Sequence[Order],
    kills: Sequence[Kill],
    alone: Sequence[str],
    failing: Sequence[Switching] = (),
    message_ages: Mapping[str, Sequence[tuple[float, float]]],
) -> Path:
    """Writes index.html, its pictures and verify.json into `directory`; the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    marks = [(k.at_s, f"kill {k.victim}") for k in kills if k.said]
    marks += [(f.at_s, f"{f.service} failing") for f in failing if f.said]
    answered = sum(o.status == 200 for o in orders)
    timeline = charts.timeline(
        "orders.png",
        [(o.sent_s, o.status == 200) for o in orders],
        marks=marks,
        title=f"Orders answered and failed per second: {answered:,} of {len(orders):,}",
        unit="orders",
        directory=directory,
    )
    latency = charts.over_time(
        "latency.png",
        {**order_percentiles(orders), **message_ages},
        marks=marks,
        title="PlaceOrder's answer time and the messages' age when processed",
        log=True,
        directory=directory,
    )
    pictures = [(timeline.name, "orders answered and failed per second"),
                (latency.name, "latency percentiles over time")]  # fmt: skip
    passed = all(c.passed for c in claims)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.from_string(PAGE.read_text())
    path = directory / "index.html"
    path.write_text(page.render(run=run, claims=claims, passed=passed, kills=kills,
                                alone=alone, failing=failing, pictures=pictures))  # fmt: skip
    (directory / "verify.json").write_text(json.dumps({
        "run": dict(run), "passed": passed,
        "claims": [{**asdict(c), "figures": dict(c.figures)} for c in claims],
        "kills": [asdict(k) for k in kills],
        "failing": [asdict(f) for f in failing],
    }, indent=2, default=str) + "\n")  # fmt: skip
    return path
