"""`make bench-logcost`: what the services' log lines cost an order, with both levels in one run.

Two systems run side by side on one private RabbitMQ node (`bench.systems.running_system`:
every service of the catalogue, one instance each, SQLite, behind its gateway), the same in
all but their LOG_LEVEL: INFO, the level the services ship with (a line per RPC and per
message handled), and WARNING. Bursts of orders are placed through each gateway in turn,
INFO then WARNING, `--rounds` times, so that the machine's drift falls on both alike; the
idle system costs the other a few millicores. For each burst: orders/s, and the CPU every
process of the system used per order (services, gateway, broker, Redis; bench.saga's
`system_pids`: the broker is shared, and only one system has traffic at a time). The INFO
system's log files are counted: the lines one order writes.

Then, in this process, the CPU one such line costs as the services write it (the runtime's
logging to a file, against a line the level filters), 20,000 times.

Ends with `RESULT ref_ms=... info_orders_s=... warning_orders_s=... info_cpu_ms=...
warning_cpu_ms=... lines_per_order=... us_per_line=... share_pct=... written_line_us=...
written_share_pct=...`: the medians over the rounds, the CPU a line costs all in (the
difference per order over the lines per order) and the share of an order's CPU at INFO that it
makes, then the same from the line's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from ordermesh import logging as chassis_logging

from bench.machine import cpu_s, reference_ms
from bench.saga import DEPLOYED_LIMITS, Approvals, burst, system_pids
from bench.systems import Running, running_system, shop_of
from harness import PrivateRabbitMQ

LEVELS = ("INFO", "WARNING")


def line_us(count: int = 20_000) -> float:
    """Microseconds of this process's CPU a line costs as the services write one (the runtime's
    logging to a file, a consumer's "message handled" line), less a line the level filters."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-logcost-lines-") as directory,
        (Path(directory) / "lines.log").open("w") as stream,
    ):
        chassis_logging.configure(service="bench", instance="bench-1", stream=stream)
        log = chassis_logging.get_logger("bench.logcost")
        fields = {
            "queue": "notification.events",
            "type": "order.v2.OrderApproved",
            "event_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        spent = {}
        for method in (log.debug, log.info):
            started = time.process_time()
            for _ in range(count):
                method("message handled", **fields)
            spent[method] = time.process_time() - started
    return (spent[log.info] - spent[log.debug]) / count * 1e6


def lines_logged(up: Running) -> int:
    """The lines the system's service instances have written so far."""
    total = 0
    for service in up.system.services:
        for instance in up.system.instances(service):
            with instance.process.log_path.open("rb") as log:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))
    return total


async def run(args: argparse.Namespace) -> None:
    orders_s: dict[str, list[float]] = {level: [] for level in LEVELS}
    cpu_ms: dict[str, list[float]] = {level: [] for level in LEVELS}
    lines: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-logcost-") as directory:
        broker = PrivateRabbitMQ(Path(directory) / "rabbitmq")
        broker.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                systems = {}
                for level in LEVELS:
                    system = running_system(
                        Path(directory), broker, "sqlite", 1, label=level.lower(),
                        log_level=level, env=DEPLOYED_LIMITS,
                    )  # fmt: skip
                    up = await stack.enter_async_context(system)
                    shop, users, products = await shop_of(
                        up.system, up.gateway, users=args.users, products=args.products
                    )
                    stack.push_async_callback(shop.close)
                    approvals = Approvals()
                    await approvals.start(up.system.amqp_url)
                    stack.push_async_callback(approvals.stop)
                    systems[level] = (up, shop, users, products, approvals)
                    await burst(shop, approvals, users, products, total=200, in_flight=32)
                for round_ in range(args.rounds):
                    # Each level first in every other round: neither gains from going second.
                    order = list(systems.items())
                    for level, (up, shop, users, products, approvals) in (
                        order if round_ % 2 == 0 else order[::-1]
                    ):
                        pids = system_pids(up, broker)
                        written = lines_logged(up)
                        before = cpu_s(pids, with_children=True)
                        rate = await burst(
                            shop, approvals, users, products,
                            total=args.burst, in_flight=args.in_flight,
                        )  # fmt: skip
                        used = (cpu_s(pids, with_children=True) - before) * 1000 / args.burst
                        orders_s[level].append(rate)
                        cpu_ms[level].append(used)
                        if level == "INFO":
                            lines.append((lines_logged(up) - written) / args.burst)
                        print(
                            f"round {round_ + 1} {level:<7}: {rate:5.1f} orders/s, "
                            f"{used:5.2f} ms of CPU per order",
                            flush=True,
                        )
        finally:
            broker.remove()
    info, warning = (statistics.median(cpu_ms[level]) for level in LEVELS)
    per_order = statistics.median(lines)
    us_per_line = (info - warning) * 1000 / per_order
    written_us = line_us()
    print(
        f"RESULT ref_ms={reference_ms():.0f} "
        f"info_orders_s={statistics.median(orders_s['INFO']):.0f} "
        f"warning_orders_s={statistics.median(orders_s['WARNING']):.0f} "
        f"info_cpu_ms={info:.2f} warning_cpu_ms={warning:.2f} "
        f"lines_per_order={per_order:.1f} us_per_line={us_per_line:.0f} "
        f"share_pct={(info - warning) / info * 100:.1f} written_line_us={written_us:.1f} "
        f"written_share_pct={per_order * written_us / 1000 / info * 100:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--products", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
