"""`python -m tools.verify` (`make verify`): see tools/verify/__init__.py.

    make verify ADMIN_PASSWORD=...                       # against make up, killing its instances
    .venv/bin/python -m tools.verify --faults kill,switches  # ... and flipping fault switches
    .venv/bin/python -m tools.verify --compose           # against make compose-up's containers
    .venv/bin/python -m tools.verify --gateway https://shop.example --ca ca.pem \\
        --prometheus http://prometheus:9090 --faults switches  # any deployment with switches

The gateway, its CA and Prometheus default to what `make up` published (.build/run/env); the
admin's e-mail to ADMIN_EMAIL (admin@ordermesh.test) and the password to ADMIN_PASSWORD (make
up prints it once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from harness.figures import commit
from harness.running import setting
from services import catalogue
from tools.chaos import Containers, Processes, Target
from tools.verify import claims as verified
from tools.verify import report
from tools.verify.api import Api, addresses
from tools.verify.faults import Switcher, Switching, kill_in_turn, switch_in_turn, victims
from tools.verify.orders import Orders, new_customers

ROOT = Path(__file__).resolve().parents[2]
# The services whose instances are counted: those an order's flow reaches (the gateway's
# rate-limit service checks each write), not the console nor auth, which it does not call.
COUNTED = ("user", "inventory", "order", "notification", "ratelimit")
# Those of them made to fail by their fault switches (the rate-limit service has none).
SWITCHED = ("user", "inventory", "order", "notification")
STOCK = 1_000_000
# The share of the run before the first fault: the messages' age is claimed of it.
CALM = 0.25
FAULTS = ("kill", "switches")


def _faults(text: str) -> frozenset[str]:
    """`--faults`: "none", or some of FAULTS, comma-separated."""
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    if chosen == {"none"}:
        return frozenset()
    if not chosen or chosen - set(FAULTS):
        raise argparse.ArgumentTypeError(f"none, or some of {', '.join(FAULTS)} (comma-separated)")
    return chosen


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.verify", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--gateway", default=setting("GATEWAY_URL") or "", help="its URL (make up's)"
    )
    parser.add_argument(
        "--ca", default=setting("GATEWAY_CA") or "", help="the CA of its certificate"
    )
    parser.add_argument(
        "--prometheus",
        default=setting("PROMETHEUS_URL") or "",
        help="the Prometheus that scrapes the services (make up's)",
    )
    parser.add_argument(
        "--admin-email", default=os.environ.get("ADMIN_EMAIL", "admin@ordermesh.test")
    )
    parser.add_argument("--rate", type=float, default=10.0, help="orders a second (10)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long (120)")
    parser.add_argument("--customers", type=int, default=40, help="customers ordering (40)")
    parser.add_argument(
        "--addresses",
        type=int,
        default=20,
        help="loopback addresses the customers spread over (20)",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default="kill",
        help="kill: one instance of each service in turn (make up, --compose); switches: each "
        "service failing for a while in turn, by its fault switches (any deployment that has "
        "them); both (kill,switches), or none (default: kill)",
    )
    parser.add_argument(
        "--compose",
        nargs="?",
        const="ordermesh",
        metavar="PROJECT",
        help="the deployment is a compose project: kill its containers",
    )
    parser.add_argument(
        "--decide-timeout",
        type=float,
        default=120.0,
        help="how long accepted orders may take to be decided after the run",
    )
    parser.add_argument(
        "--report", default=str(ROOT / ".build" / "reports" / "verify"), help="the report's folder"
    )
    return parser.parse_args(argv)


async def verify(args: argparse.Namespace, password: str) -> bool:
    run_id = secrets.token_hex(4)
    apis = [
        Api(args.gateway, ca_file=args.ca, source=a)
        for a in addresses(args.gateway, args.addresses)
    ]
    try:
        admin = apis[0]
        login = {"email": args.admin_email, "password": password}
        admin_token = (await admin.ok("POST", "/v1/auth/login", login))["tokens"]["accessToken"]
        product = (
            await admin.ok(
                "POST",
                "/v1/products",
                {
                    "sku": f"VERIFY-{run_id.upper()}",
                    "name": "Verification kettle",
                    "price": {"amountMinor": 1, "currencyCode": "EUR"},
                    "initialStock": STOCK,
                },
                token=admin_token,
            )
        )["product"]
        print(f"verify {run_id}: {args.customers} customers signing up...", flush=True)
        customers = await new_customers(apis, args.customers, run_id)
        target: Target | None = None
        if "kill" in args.faults:
            target = Containers(args.compose) if args.compose else Processes()
        names = [s.name for s in catalogue.CATALOGUE]
        kills, alone = victims(target.instances(names)) if target else ([], [])
        switcher = Switcher(admin, admin_token, run_id)
        failing = []
        if "switches" in args.faults:
            failing = [Switching(name) for name in SWITCHED]
            if why := await switcher.usable(failing[0].service):
                raise SystemExit(f"verify: the fault switches cannot be turned here: {why}")
        orders = Orders(run_id, customers, product["productId"])
        print(
            f"{args.rate:g} orders a second for {args.seconds:g} s; kills: "
            f"{', '.join(k.victim for k in kills) or 'none'}; failing by their switches: "
            f"{', '.join(f.service for f in failing) or 'none'}",
            flush=True,
        )
        started_at = time.time()
        calm_s = args.seconds * CALM
        orders.begin()
        await asyncio.gather(
            orders.run(args.rate, args.seconds),
            kill_in_turn(target, kills, calm_s=calm_s, seconds=args.seconds, now_s=orders.now_s)
            if target
            else asyncio.sleep(0),
            switch_in_turn(
                switcher, failing, calm_s=calm_s, seconds=args.seconds, now_s=orders.now_s
            ),
        )
        print(
            f"sent {len(orders.placed)}; waiting for every accepted order's decision...", flush=True
        )
        reconciling = time.monotonic()
        decided = await verified.decisions(orders.placed, args.decide_timeout)
        found = [
            verified.availability(orders.placed),
            await verified.zero_loss(
                orders.placed,
                decided,
                admins=apis,
                admin_token=admin_token,
                product=product,
                stock_before=STOCK,
                timeout_s=60.0,
            ),
        ]
        ages: dict[str, list[tuple[float, float]]] = {}
        if args.prometheus:
            await asyncio.sleep(5)  # the last scrape of the run
            ended_at = time.time()
            found.append(
                await verified.message_ages(
                    args.prometheus, started_at, started_at + calm_s, ended_at
                )
            )
            found.append(
                await verified.instances(
                    args.prometheus, COUNTED, started_at, started_at + calm_s, ended_at
                )
            )
            ages = await asyncio.to_thread(
                verified.age_series, args.prometheus, started_at, ended_at
            )
        else:
            found += [
                verified.Claim(name, False, "not measured: no Prometheus given (--prometheus)")
                for name in ("message processing", "instances")
            ]
        print(f"reconciled in {time.monotonic() - reconciling:.0f} s", flush=True)
        run = {
            "id": run_id,
            "gateway": args.gateway,
            "commit": commit(),
            "started": datetime.fromtimestamp(started_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "rate": args.rate,
            "seconds": args.seconds,
            "sent": len(orders.placed),
            "customers": args.customers,
            "faults": ", ".join([*(k.victim for k in kills), *(f.said for f in failing if f.said)])
            or "none",
            "command": shlex.join(["python", "-m", "tools.verify", *sys.argv[1:]]),
        }
        page = report.write(
            Path(args.report),
            run=run,
            claims=found,
            orders=orders.placed,
            kills=kills,
            alone=alone,
            failing=failing,
            message_ages=ages,
        )
        for kill in kills:
            print(f"  {kill.at_s:6.1f} s  {kill.said or 'not killed: ' + kill.error}")
        for f in failing:
            print(f"  {f.at_s:6.1f}-{f.until_s:.1f} s  {f.said}{'; ' + f.error if f.error else ''}")
        print("\n".join(report.lines(found)))
        print(f"report: {page}")
        return all(c.passed for c in found)
    finally:
        for api in apis:
            await api.close()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    password = os.environ.get("ADMIN_PASSWORD", "")
    if not args.gateway or not password:
        print(
            "give the gateway (--gateway, or run make up) and the admin's password "
            "(ADMIN_PASSWORD; make up prints it)",
            file=sys.stderr,
        )
        return 2
    return 0 if asyncio.run(verify(args, password)) else 1


if __name__ == "__main__":
    sys.exit(main())
