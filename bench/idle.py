"""`make bench-idle`: the CPU an instance uses with no traffic, against a minimal process.

Every service of the catalogue runs as a process (`bench.systems.running_system`: one instance
each, SQLite, behind the gateway, at INFO), as it runs deployed: registered, health-checked by
Envoy, its relay, metrics and readiness on their timers. Beside it, in the same run, the
baseline: a minimal process with what any such service has, a grpc.aio server (the standard
health service) and an aio-pika connection consuming a queue on the same broker, health-checked
by this process as often as Envoy checks an instance.

With no request or message anywhere, each process's CPU (every thread's, from
/proc/PID/task/*/schedstat, in nanoseconds) is taken over `--rounds` windows of `--window-s`.
Ends with `RESULT ref_ms=... minimal_millicores=... instance_millicores=... <service>=...` and
the ratio of an instance's (the mean over the services) to the minimal process's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.machine import add_log_level, reference_ms
from bench.systems import running_system
from harness import PrivateRabbitMQ
from harness.process import ManagedProcess, accepts, free_port

# The minimal process: started with the interpreter the services use.
MINIMAL = """
import asyncio, sys
import aio_pika, grpc
from grpc_health.v1 import health, health_pb2_grpc

async def main(port: int, url: str) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    await queue.consume(handle)
    await server.wait_for_termination()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def cpu_ns(pid: int) -> int:
    """CPU time every thread of `pid` has used so far, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total


async def health_checks(address: str, interval_s: float) -> None:
    """Checks the minimal process's health as Envoy checks an instance's, until cancelled."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            await asyncio.sleep(interval_s)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as directory:
        broker = PrivateRabbitMQ(Path(directory) / "rabbitmq")
        broker.start()
        try:
            async with running_system(
                Path(directory), broker, "sqlite", 1, log_level=args.log_level
            ) as up:
                port = free_port()
                minimal = ManagedProcess(
                    "minimal",
                    [sys.executable, "-c", MINIMAL, str(port), up.system.amqp_url],
                    directory=Path(directory) / "minimal",
                    ready=lambda: accepts(port),
                )
                minimal.start()
                checks = asyncio.create_task(
                    health_checks(f"127.0.0.1:{port}", up.gateway.config.health_check_interval_s)
                )
                try:
                    pids = {
                        service: up.system.instances(service)[0].process.pid
                        for service in up.system.services
                    }
                    assert minimal.pid is not None
                    assert None not in pids.values()
                    pids["minimal"] = minimal.pid
                    await asyncio.sleep(args.settle_s)  # after start: caches, first rounds
                    used: dict[str, list[float]] = {name: [] for name in pids}
                    for round_ in range(args.rounds):
                        before = {name: cpu_ns(pid) for name, pid in pids.items()}
                        await asyncio.sleep(args.window_s)
                        for name, pid in pids.items():
                            used[name].append((cpu_ns(pid) - before[name]) / args.window_s / 1e6)
                        print(
                            f"round {round_ + 1}: "
                            + "  ".join(f"{n} {u[-1]:.2f}" for n, u in used.items())
                            + " millicores",
                            flush=True,
                        )
                finally:
                    checks.cancel()
                    await asyncio.gather(checks, return_exceptions=True)
                    minimal.stop()
        finally:
            broker.remove()
    # The baseline was checked as an instance is, all along.
    if checks.done() and not checks.cancelled() and checks.exception() is not None:
        raise RuntimeError("the minimal process's health checks failed") from checks.exception()
    millicores = {name: statistics.fmean(values) for name, values in used.items()}
    baseline = millicores.pop("minimal")
    instance = statistics.fmean(millicores.values())
    print(
        f"RESULT ref_ms={reference_ms():.0f} minimal_millicores={baseline:.2f} "
        f"instance_millicores={instance:.2f} "
        + " ".join(f"{name}={value:.2f}" for name, value in millicores.items()),
        flush=True,
    )
    print(f"ratio: an instance / the minimal process, idle CPU {instance / baseline:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--settle-s", type=float, default=10.0)
    add_log_level(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
