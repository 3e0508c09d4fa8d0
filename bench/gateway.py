"""`make bench-gateway`: what the gateway costs a call, and what its auth check adds.

One run, one system (every service as a process, registered in a private Redis, on a private
RabbitMQ), two Envoy gateways in front of it: one plain (routes and transcoding only) and one
complete (plus the ext_authz check and the rate limits). The same authenticated read
(UserService.GetProfile, `GET /v1/users/me`) is called for a fixed time with a fixed number in
flight, by this process, four ways:

    direct        gRPC straight to a user service instance (which verifies the token itself)
    envoy_grpc    gRPC through the plain gateway
    rest          REST through the plain gateway (transcoding)
    rest_auth     REST through the complete gateway (transcoding + auth check + rate limits)

For each: p50/p99 latency and requests/s. Ends with `RESULT ref_ms=... direct_rps=...
envoy_grpc_rps=... rest_rps=... rest_auth_rps=... auth_overhead_p50_ms=...` (rest_auth p50
minus rest p50). The load generator shares the machine's 2 cores with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from user.v1 import user_service_pb2, user_service_pb2_grpc

from bench.events import percentile
from bench.machine import reference_ms
from chassis.testing import PrivateRabbitMQ, PrivateRedis
from chassis.testing.system import UNREACHED_RATE_LIMITS, System
from gateway.local import LocalGateway
from tests.integration.shop import Shop

Call = Callable[[], Awaitable[None]]


async def measure(call: Call, *, seconds: float, in_flight: int) -> tuple[list[float], float]:
    """Latencies (ms) and requests/s of `call` kept `in_flight` at once for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return latencies, len(latencies) / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    broker = PrivateRabbitMQ(directory / "rabbitmq")
    redis = PrivateRedis(directory / "redis")
    gateways: list[LocalGateway] = []
    system: System | None = None
    try:
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(redis.start)
        system = System(
            directory / "system",
            amqp_url=broker.url,
            env={
                "REDIS_URL": redis.url,
                "LOG_LEVEL": "WARNING",
                **UNREACHED_RATE_LIMITS,
            },
            separate_sinks=True,
        )
        await asyncio.to_thread(system.start)
        # No local floor: it would cap what is measured (1,000 requests/s by default).
        unbounded = 1_000_000
        plain = LocalGateway(
            directory / "plain",
            redis_url=redis.url,
            auth=False,
            rate_limit=False,
            local_limit_per_s=unbounded,
        )
        complete = LocalGateway(
            directory / "complete", redis_url=redis.url, local_limit_per_s=unbounded
        )
        gateways = [plain, complete]
        for gateway in gateways:
            await asyncio.to_thread(gateway.start)
            await asyncio.to_thread(gateway.wait_for_healthy)

        shop = Shop(system)
        session = await shop.register()
        await shop.close()
        metadata = [("authorization", f"Bearer {session.access_token}")]
        request = user_service_pb2.GetProfileRequest()

        def grpc_call(address: str) -> tuple[Call, grpc.aio.Channel]:
            channel = grpc.aio.insecure_channel(address)
            stub = user_service_pb2_grpc.UserServiceStub(channel)

            async def call() -> None:
                await stub.GetProfile(request, metadata=metadata, timeout=5)

            return call, channel

        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.in_flight),
            headers={"authorization": f"Bearer {session.access_token}"},
        )

        def rest_call(url: str) -> Call:
            async def call() -> None:
                async with http.get(f"{url}/v1/users/me") as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")

            return call

        direct, direct_channel = grpc_call(system.address("user"))
        through, envoy_channel = grpc_call(plain.address)
        paths = {
            "direct": direct,
            "envoy_grpc": through,
            "rest": rest_call(plain.url),
            "rest_auth": rest_call(complete.url),
        }
        results: dict[str, tuple[list[float], float]] = {}
        try:
            for name, call in paths.items():
                await measure(call, seconds=1.0, in_flight=args.in_flight)  # warm-up
                results[name] = await measure(call, seconds=args.seconds, in_flight=args.in_flight)
                latencies, rps = results[name]
                print(
                    f"{name:<11} p50 {percentile(latencies, 50):6.2f} ms  "
                    f"p99 {percentile(latencies, 99):6.2f} ms  {rps:7.0f} requests/s",
                    flush=True,
                )
        finally:
            await http.close()
            await direct_channel.close()
            await envoy_channel.close()
    finally:
        for gateway in gateways:
            await asyncio.to_thread(gateway.stop)
        if system is not None:
            await asyncio.to_thread(system.stop)
        await asyncio.to_thread(redis.remove)
        await asyncio.to_thread(broker.remove)

    rps = {name: r for name, (_, r) in results.items()}
    overhead = percentile(results["rest_auth"][0], 50) - percentile(results["rest"][0], 50)
    print(
        f"RESULT ref_ms={reference_ms():.0f} direct_rps={rps['direct']:.0f} "
        f"envoy_grpc_rps={rps['envoy_grpc']:.0f} rest_rps={rps['rest']:.0f} "
        f"rest_auth_rps={rps['rest_auth']:.0f} auth_overhead_p50_ms={overhead:.2f}"
    )
    print(f"ratio: rest_auth/rest throughput {rps['rest_auth'] / rps['rest']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per path")
    parser.add_argument("--in-flight", type=int, default=16)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
