"""The figures a run of the test suite measured (the failover's and the rollout's answered
requests, ...), recorded by the tests as they go (`record`), then printed at the end of the run
with the commit they were measured on, and written to REPORTS_DIR/figures.json: CI's output
carries them for every change, so the documents quote the record of runs, not a good day.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.charts import REPORTS

__all__ = ["record", "recorded", "summary", "write"]

ROOT = Path(__file__).resolve().parent.parent
_FIGURES: list[dict[str, Any]] = []


def record(test: str, what: str, **values: Any) -> None:
    """One figure of `test` (its node id): `what` says it in words; `values` are its numbers."""
    _FIGURES.append({"test": test, "what": what, **values})


def recorded() -> list[dict[str, Any]]:
    return list(_FIGURES)


def commit() -> str:
    """The commit the run measured, `+changes` when the checkout differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def summary() -> list[str]:
    """The lines printed at the end of the run (none if nothing was recorded)."""
    if not _FIGURES:
        return []
    lines = [f"figures of this run (commit {commit()}):"]
    lines += [f"  {f['what']}  [{f['test']}]" for f in _FIGURES]
    return lines


def write(directory: Path = REPORTS) -> Path | None:
    if not _FIGURES:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "figures.json"
    run = {"commit": commit(), "at": datetime.now(UTC).isoformat(), "figures": _FIGURES}
    path.write_text(json.dumps(run, indent=1) + "\n")
    return path
