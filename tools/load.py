"""`make load`: realistic users against the gateway (Locust; the users: tools/locustfile.py).

Shoppers register, sign in, browse, order, follow each order until the saga decides it, cancel,
read their notifications and orders and read through GraphQL; visitors browse. Against the
system `make up` runs (its gateway and CA from .build/run/env), or GATEWAY_URL (and
GATEWAY_CA). Headless by default: `--users` at once for `--duration`, at `--rate` tasks a second
in all (each user's share; 0: each waits 1-3 s between tasks), then a table per endpoint of
requests, failures and p50/p95/p99, the failures by reason, and Locust's own HTML report in
.build/reports/load.html; exits 1 if any request failed. `--web` serves Locust's web UI on
127.0.0.1 instead, to start, change and stop the load from a browser.

    make load USERS=20 RATE=10 DURATION=60s
    make load WEB=1
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.running import setting

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPORTS = ROOT / ".build" / "reports"


def locust_command(
    args: argparse.Namespace, host: str, ca: str | None, csv_prefix: Path
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--host",
        host,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate or args.users),
        "--task-rate",
        str(args.rate / args.users if args.rate else 0),
        "--addresses",
        str(args.addresses),
        "--loglevel",
        "WARNING",
    ]
    if ca:
        command += ["--gateway-ca", ca]
    if args.web:
        return [*command, "--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
    return [
        *command,
        "--headless",
        "--run-time",
        args.duration,
        "--only-summary",
        "--csv",
        str(csv_prefix),
        "--html",
        str(REPORTS / "load.html"),
    ]


def table(csv_prefix: Path) -> str:
    """Requests, failures and p50/p95/p99 per endpoint, then the failures by reason."""
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [
        f"{'endpoint':<36} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    ]
    for row in rows:
        # The users name each request after its method and path; the saga's own rows are SAGA.
        name = row["Name"]
        if not name.startswith(row["Type"]) and name != "Aggregated":
            name = f"{row['Type']} {name}"
        lines.append(
            f"{name:<36} {row['Request Count']:>9} {row['Failure Count']:>7} "
            f"{row['50%']:>8} {row['95%']:>8} {row['99%']:>8}"
        )
    with open(f"{csv_prefix}_failures.csv", newline="") as f:
        failures = list(csv.DictReader(f))
    if failures:
        lines.append("\nfailures:")
        for row in failures:
            lines.append(f"  {row['Occurrences']:>6} x {row['Name']}: {row['Error'][:160]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="simultaneous users (default 20)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="tasks a second, all users together (0: 1-3 s apart)",
    )
    parser.add_argument("--duration", default="60s", help="how long, e.g. 90s, 5m (default 60s)")
    parser.add_argument("--spawn-rate", type=float, default=0.0, help="users started a second")
    parser.add_argument(
        "--addresses",
        type=int,
        default=200,
        help="loopback addresses the users speak from, when the gateway is on loopback",
    )
    parser.add_argument("--web", action="store_true", help="Locust's web UI on 127.0.0.1")
    parser.add_argument("--web-port", type=int, default=8089)
    args = parser.parse_args()
    host = setting("GATEWAY_URL")
    if host is None:
        print("no gateway: start the system with `make up`, or set GATEWAY_URL", file=sys.stderr)
        return 2
    REPORTS.mkdir(parents=True, exist_ok=True)
    csv_prefix = Path(tempfile.mkdtemp(prefix="load-")) / "load"
    command = locust_command(args, host.rstrip("/"), setting("GATEWAY_CA"), csv_prefix)
    if args.web:
        print(f"Locust's web UI: http://127.0.0.1:{args.web_port} (Ctrl-C stops)", flush=True)
    done = subprocess.run(command, check=False)
    if args.web:
        return done.returncode
    print(table(csv_prefix))
    print(f"\nLocust's report: {REPORTS / 'load.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
