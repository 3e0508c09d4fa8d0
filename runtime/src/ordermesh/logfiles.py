"""The JSON log lines the processes of a run write to files under one directory, read back.

Every process of a local run writes its lines (`ordermesh.logging`) to its own file under a run
directory (`make up`: .build/run, `services/<service>/<instance>.log`, `gateway/`, ...). What
this reads, and guarantees:
- only complete lines: a line being written is read at the next read (`Reader`), never half;
- only JSON objects with a `timestamp`: a broker's or Envoy's own text lines are skipped, and so
  is a line that does not parse; nothing raises for what a file holds, and a file that vanished
  or cannot be opened is skipped;
- `search` also reads the gateway's access log lines (Envoy's JSON: `time`, `request_id`),
  given as `service: gateway`, `event: access`, their request id as the correlation id (the id
  a service adopts when the client sent none, ordermesh.correlation);
- `search` stops at `limit` records and reads a line's JSON only if the line holds one of the
  ids: one request's lines are found in a large run directory without parsing it all.

`make logs` (tools/logs.py) and the operator console's story of a request read through it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LEVELS", "Filter", "Reader", "search"]

LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Filter:
    id: str = ""
    service: str = ""
    level: str = ""
    since: str = ""  # ISO time, as the lines carry it

    def admits(self, record: dict[str, Any]) -> bool:
        if self.id and self.id not in (record.get("correlation_id"), record.get("trace_id")):
            return False
        if self.service and record.get("service") != self.service:
            return False
        if self.level and _rank(record.get("level")) < _rank(self.level):
            return False
        return not self.since or str(record.get("timestamp", "")) >= self.since


def _rank(level: object) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def _record(line: bytes, *, access_lines: bool = False) -> dict[str, Any] | None:
    """The record of one line, if it is one (see the module doc)."""
    if not line.startswith(b"{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "timestamp" in record:
        return record
    if access_lines and "time" in record and "request_id" in record:
        return {
            "timestamp": str(record["time"]),
            "service": "gateway",
            "level": "info",
            "event": "access",
            "correlation_id": record["request_id"],
            **{k: v for k, v in record.items() if k not in ("time", "request_id")},
        }
    return None


@dataclass
class Reader:
    """Reads the complete lines added to the log files under `root` since the last read."""

    root: Path
    _offsets: dict[Path, int] = field(default_factory=dict)

    def new_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for path in sorted(self.root.rglob("*.log")):
            records.extend(self._read(path))
        return sorted(records, key=lambda r: str(r.get("timestamp", "")))

    def _read(self, path: Path) -> Iterator[dict[str, Any]]:
        offset = self._offsets.get(path, 0)
        try:
            with path.open("rb") as file:
                if file.seek(0, 2) < offset:  # truncated or replaced: from its start
                    offset = 0
                file.seek(offset)
                data = file.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        self._offsets[path] = offset + len(complete)
        for line in complete.splitlines():
            record = _record(line)
            if record is not None:
                yield record


def search(root: Path, ids: Collection[str], *, limit: int = 2000) -> list[dict[str, Any]]:
    """The records under `root` whose correlation id or trace id is one of `ids` (the gateway's
    access lines included), in time order, at most `limit` of them. Blocking: run it in a
    thread from the event loop."""
    wanted = {i for i in ids if i}
    if not wanted:
        return []
    needles = [i.encode() for i in wanted]
    found: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.log")):
        try:
            with path.open("rb") as file:
                for line in file:
                    if not line.endswith(b"\n") or not any(n in line for n in needles):
                        continue
                    record = _record(line, access_lines=True)
                    if record is None or not (
                        record.get("correlation_id") in wanted or record.get("trace_id") in wanted
                    ):
                        continue
                    found.append(record)
                    if len(found) >= limit:
                        break
        except OSError:
            continue
        if len(found) >= limit:
            break
    return sorted(found, key=lambda r: str(r.get("timestamp", "")))
