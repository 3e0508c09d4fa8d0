"""`make status`: every registered instance, its health, its circuit breakers and its notes
(what needs an operator, e.g. sagas parked after their compensations went unanswered).

Reads the registry in Redis at REDIS_URL, or at the address `make up` wrote to
.build/run/env; asks each instance's gRPC health service directly (1 s deadline).
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chassis.registry import Instance, Registry
from tools.running import setting


async def health(instance: Instance) -> str:
    async with grpc.aio.insecure_channel(instance.address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


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
    header = ("service", "instance", "address", "health", "circuit breakers", "notes")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
