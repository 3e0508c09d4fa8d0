"""`make status`: every registered instance, its health, its circuit breakers and its notes
(what needs an operator, e.g. sagas parked after their compensations went unanswered); then,
per service, the figures an operator looks at first, from Prometheus over the last minute:
requests/s, the share of calls the server failed, p99 latency, the age of the oldest outbox
message waiting, dead-lettered messages, and the destinations whose breaker is open; then the
alerts firing (monitoring/rules.yml), with their severity, service, instance and since when:
those Alertmanager holds (its API v2), or without an Alertmanager those of Prometheus (firing,
and pending: their condition holds, not yet for their `for:`).

Reads the registry in Redis at REDIS_URL, Prometheus at PROMETHEUS_URL and Alertmanager at
ALERTMANAGER_URL, or at the addresses `make up` wrote to .build/run/env; asks each instance's
gRPC health service directly (1 s deadline).
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import urllib.error
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ordermesh.registry import Instance, Registry

from harness.alertmanager import alerts
from harness.prometheus import api
from harness.running import setting
from services.console.clients import FIGURES as CONSOLE_FIGURES


async def health(instance: Instance) -> str:
    async with grpc.aio.insecure_channel(instance.address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


# Column, PromQL by service, and how a value is shown: the console's figures (the recording
# rules of monitoring/rules.yml), but the dead letters summed by service.
FIGURES = (
    ("req/s", CONSOLE_FIGURES["rps"], "{:.1f}"),
    ("errors", CONSOLE_FIGURES["errors"], "{:.2%}"),
    ("p99 ms", CONSOLE_FIGURES["p99_ms"], "{:.1f}"),
    ("outbox age s", CONSOLE_FIGURES["outbox_age_s"], "{:.1f}"),
    (
        "dead letters",
        "sum by (service) (max by (service, queue) (ordermesh_dead_letter_queue_messages))",
        "{:.0f}",
    ),
)
OPEN_BREAKERS = CONSOLE_FIGURES["open_breaker"]


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(prometheus, "query", {"query": expr}, timeout_s=3.0)[
        "result"
    ]
    return result


def figures(prometheus: str) -> list[tuple[str, ...]]:
    """One row per service: the FIGURES, then its open breakers."""
    table: dict[str, dict[str, str]] = {}
    for column, expr, shown in FIGURES:
        for series in query(prometheus, expr):
            number = float(series["value"][1])
            text = "-" if math.isnan(number) else shown.format(number)
            table.setdefault(series["metric"]["service"], {})[column] = text
    for series in query(prometheus, OPEN_BREAKERS):
        row = table.setdefault(series["metric"]["service"], {})
        destinations = [*filter(None, [row.get("open breakers")]), series["metric"]["destination"]]
        row["open breakers"] = ", ".join(destinations)
    columns = [c for c, _, _ in FIGURES] + ["open breakers"]
    return [(service, *(table[service].get(c, "-") for c in columns)) for service in sorted(table)]


ALERT_COLUMNS = ("alert", "severity", "service", "instance", "state", "since")
# Alertmanager's states, as an operator says them.
STATES = {"active": "firing", "suppressed": "silenced", "unprocessed": "received"}


def since(timestamp: str, now: datetime) -> str:
    """An RFC 3339 time (Alertmanager's `startsAt`, Prometheus's `activeAt`, whose fractions
    of a second go to nanoseconds) as UTC, and how long ago."""
    whole = re.sub(r"\.\d+", "", timestamp).replace("Z", "+00:00")
    at = datetime.fromisoformat(whole).astimezone(UTC)
    seconds = max(0, int((now - at).total_seconds()))
    if seconds >= 3600:
        ago = f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
    elif seconds >= 60:
        ago = f"{seconds // 60}m{seconds % 60:02d}s"
    else:
        ago = f"{seconds}s"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC ({ago} ago)"


def alert_row(labels: dict[str, str], state: str, started: str, now: datetime) -> tuple[str, ...]:
    return (
        labels.get("alertname", "-"),
        labels.get("severity", "-"),
        labels.get("service") or labels.get("queue") or "-",
        labels.get("instance_id") or labels.get("instance") or "-",
        state,
        since(started, now),
    )


def alertmanager_alerts(url: str, now: datetime) -> list[tuple[str, ...]]:
    """Every alert the Alertmanager at `url` holds, oldest first."""
    held = sorted(alerts(url, timeout_s=3.0), key=lambda alert: str(alert["startsAt"]))
    return [
        alert_row(
            alert["labels"],
            STATES.get(alert["status"]["state"], alert["status"]["state"]),
            alert["startsAt"],
            now,
        )
        for alert in held
    ]


def prometheus_alerts(url: str, now: datetime) -> list[tuple[str, ...]]:
    """The alerts of the Prometheus at `url`, firing or pending, oldest first."""
    active = api(url, "alerts", {}, timeout_s=3.0)["alerts"]
    return [
        alert_row(alert["labels"], alert["state"], alert["activeAt"], now)
        for alert in sorted(active, key=lambda alert: str(alert["activeAt"]))
    ]


def printed(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def main() -> int:
    url = setting("REDIS_URL")
    if url is None:
        print("no registry: set REDIS_URL, or start the system with `make up`", file=sys.stderr)
        return 2
    registry = Registry(url)
    try:
        services = await registry.services()
        rows = []
        for service in services:
            for instance in await registry.instances(service):
                breakers = ", ".join(
                    f"{name.removeprefix('breaker.')}={state}"
                    for name, state in sorted(instance.metadata.items())
                    if name.startswith("breaker.")
                )
                notes = ", ".join(
                    f"{name}={value}"
                    for name, value in sorted(instance.metadata.items())
                    if not name.startswith("breaker.")
                )
                state = await health(instance)
                if instance.draining:
                    state += " (draining)"
                rows.append(
                    (service, instance.instance_id, instance.address, state, breakers, notes)
                )
    finally:
        await registry.close()
    if not rows:
        print(f"no instance is registered in {url}")
        return 1
    printed(("service", "instance", "address", "health", "circuit breakers", "notes"), rows)
    prometheus = setting("PROMETHEUS_URL")
    if prometheus is None:
        print("\nno figures: set PROMETHEUS_URL, or start the system with `make up`")
    else:
        try:
            by_service = await asyncio.to_thread(figures, prometheus)
        except (urllib.error.URLError, OSError, KeyError, ValueError, RuntimeError) as exc:
            print(f"\nno figures: Prometheus at {prometheus} did not answer ({exc})")
        else:
            print(f"\nlast minute, from {prometheus}:")
            columns = ["service", *(c for c, _, _ in FIGURES), "open breakers"]
            printed(columns, by_service)
    await asyncio.to_thread(show_alerts, prometheus)
    return 0


def show_alerts(prometheus: str | None) -> None:
    """The alerts, from Alertmanager if there is one, else from Prometheus."""
    alertmanager = setting("ALERTMANAGER_URL")
    source = alertmanager or prometheus
    if source is None:
        return
    read = alertmanager_alerts if alertmanager else prometheus_alerts
    try:
        rows = read(source, datetime.now(UTC))
    except (urllib.error.URLError, OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"\nno alerts: {source} did not answer ({exc})")
        return
    if not rows:
        print(f"\nno alert firing, from {source}")
        return
    print(f"\nalerts, from {source}:")
    printed(ALERT_COLUMNS, rows)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
