"""`make bench-gateway`: what the gateway costs a call, and what its auth check adds.

One run, one system (every service as a process, registered in a private Redis, on a private
RabbitMQ), Envoy gateways in front of it: one plain (routes and transcoding only) and two
complete (plus the edge auth: the token verified by jwt_authn, the revoked sessions and the
admin rule by RBAC, fed by the auth service; and the rate limits). The same authenticated
read (UserService.GetProfile, `GET /v1/users/me`, which needs no per-call auth check) is
called six ways, and one more way, the baseline of the service's own cost:

    bare          gRPC to a bare grpc.aio server in a process of its own, whose GetProfile
                  answers the user service's answer (taken once) and does nothing else: no
                  token check, store, log line, metric or interceptor
    direct        gRPC straight to a user service instance (which verifies the token itself)
    envoy_grpc    gRPC through the plain gateway
    rest          REST through the plain gateway (transcoding)
    rest_auth     REST through a complete gateway (transcoding + edge auth + rate limits)
    rest_users    the same through a gateway with the limits a deployment has (a floor of 1,000
                  requests/s, 50 reads/s per user: GatewayConfig's defaults), each call with
                  the token of the next of `--users` customers (so the token caches of
                  jwt_authn and of the user service's verifier hold one per customer, not one
                  for all); measured at the fixed rate only, as that gateway sheds (429)
                  what passes its floor
    graphql       the same fields as `{ me { ... } }` through the complete gateway's /graphql:
                  Envoy (edge auth, limits), the federation gateway (Hive Gateway, Node), Envoy's
                  subgraph listener, the user service's subgraph (which verifies the token)

For each, two measurements:
- latency at a fixed rate (`--rate`, or half the most a path sustains if that is less), each
  call timed from when it was due, so a late start counts against it: p50/p99;
- the most it sustains: calls kept `--in-flight` at once for `--seconds`: requests/s, p50/p99
  (at saturation latency is mostly queueing), and the CPU each process used per call
  (loadgen: this process; envoy: the gateway the path goes through; user, auth: the services),
  which tells where a path's cost goes.
All of it with `--revoked` (10,000) sessions in the revoked set (written to the policy feed
directly: real logouts of that many would take minutes of password hashing). Then how fast a
logout reaches every gateway: `--logouts` times a session is logged out through one complete gateway
and its access token sent to both every 5 ms until both refuse it: the time from the logout's
start to the second refusal (logout RPC, outbox, broker, auth service, Redis, each gateway's
agent, Envoy applying the RBAC file).

Then what the gateway's first filter, the Lua script that decides the client's address every
limit counts by (`ordermesh.client_address`), costs Envoy: gRPC through the plain gateway and
through a copy of it without that filter, in alternating bursts (6 rounds of `--seconds`/4 at
saturation), Envoy's CPU per call of each.

Ends with `RESULT ref_ms=... bare_rps=... direct_rps=... envoy_grpc_rps=... rest_rps=...
rest_auth_rps=... graphql_rps=... rest_users_p50_ms=... rest_users_p99_ms=...
auth_overhead_p50_ms=... revocation_p99_ms=... user_cpu_us=... bare_cpu_us=...
client_filter_envoy_us=...` (rest_auth p50 minus rest p50 at the fixed rate; the same at
saturation follows as auth_overhead_p50_saturated_ms; the CPU per call of the user service,
direct, and of the bare server, each at its most; Envoy's CPU per call with the filter less
without it), then the ratios. The load generator shares the machine's 2 cores
with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import redis.asyncio as aioredis
from ordermesh import policy
from ordermesh.gateway.auth import service as auth_policy
from ordermesh.gateway.auth import store as auth_store
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.store import open_store, run_transaction
from user.v1 import user_service_pb2, user_service_pb2_grpc

from bench.events import percentile
from bench.machine import add_log_level, cpu_s, reference_ms
from harness import PrivateRabbitMQ, PrivateRedis, charts
from harness.gateway import LocalGateway
from harness.process import ManagedProcess, accepts, free_port
from harness.shop import Shop
from harness.system import UNREACHED_RATE_LIMITS, System

Call = Callable[[], Awaitable[None]]
# The limits a gateway has unless its deployment sets others (GatewayConfig's defaults).
DEPLOYED = {f.name: f.default for f in dataclasses.fields(GatewayConfig)}

# The bare server: argv the port, then the answer it gives every GetProfile (serialized).
BARE_SERVER = """
import asyncio, sys
import grpc
from user.v1 import user_service_pb2, user_service_pb2_grpc

ANSWER = user_service_pb2.GetProfileResponse.FromString(bytes.fromhex(sys.argv[2]))

class Users(user_service_pb2_grpc.UserServiceServicer):
    async def GetProfile(self, request, context):
        return ANSWER

async def main() -> None:
    server = grpc.aio.server()
    user_service_pb2_grpc.add_UserServiceServicer_to_server(Users(), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""


async def at_rate(call: Call, *, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `call` started `rate` times a second for `seconds`, each timed from
    when it was due."""
    latencies: list[float] = []

    async def one(due: float) -> None:
        await call()
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        due = started + n / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return latencies


async def saturate(call: Call, *, seconds: float, in_flight: int) -> tuple[list[float], float]:
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


async def revoke_earlier_sessions(system: System, count: int) -> None:
    """`count` sessions revoked in the auth service's store, as if ended earlier (see the module
    doc); its instances publish them with the next check."""
    store = open_store(system.store_url("auth"), database="auth")
    await store.open(auth_store.COLLECTIONS)
    try:
        until = time.time() + 3600
        revoked = {f"earlier-{n}": until for n in range(count)}
        await run_transaction(store, lambda tx: auth_policy.record_revocations(tx, revoked))
    finally:
        await store.close()


@dataclass
class Revocation:
    """Milliseconds from a logout's start: answered, published by the auth service (its
    notice in Redis), refused by every gateway."""

    answered_ms: float
    published_ms: float
    refused_ms: float


async def revocations(
    shop: Shop, gateways: list[LocalGateway], redis_url: str, *, logouts: int
) -> list[Revocation]:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    pubsub = redis.pubsub()
    await pubsub.subscribe(policy.CHANNEL)  # each policy published
    notices: list[float] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                notices.append(time.perf_counter())

    listener = asyncio.create_task(listen())
    measured = []
    try:
        async with aiohttp.ClientSession() as http:

            async def status(gateway: LocalGateway, token: str) -> int:
                headers = {"authorization": f"Bearer {token}"}
                async with http.get(f"{gateway.url}/v1/users/me", headers=headers) as response:
                    await response.read()
                    return response.status

            for _ in range(logouts):
                session = await shop.register()
                assert {await status(g, session.access_token) for g in gateways} == {200}
                started = time.perf_counter()
                body = {"refreshToken": session.refresh_token}
                async with http.post(f"{gateways[0].url}/v1/auth/logout", json=body) as response:
                    assert response.status == 200, await response.text()
                answered = time.perf_counter()
                pending = list(gateways)
                while pending:
                    pending = [g for g in pending if await status(g, session.access_token) != 401]
                    if pending:
                        await asyncio.sleep(0.005)
                refused = time.perf_counter()
                published = min((t for t in notices if t > started), default=refused)
                measured.append(
                    Revocation(
                        answered_ms=(answered - started) * 1000,
                        published_ms=(published - started) * 1000,
                        refused_ms=(refused - started) * 1000,
                    )
                )
    finally:
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()
    return measured


CLIENT_FILTER = "ordermesh.client_address"


async def alternated(
    calls: dict[str, tuple[Call, LocalGateway]], *, rounds: int, seconds: float, in_flight: int
) -> dict[str, float]:
    """The CPU per call (us) of each gateway's Envoy, at saturation, measured in bursts that
    alternate (AB, BA, AB, ...) so that the machine's drift over the run weighs on each alike:
    measured one after the other, the later path was the slower by more than the difference
    sought (every process's CPU per call, the user service's too, rose by 20-30 %)."""
    spent = dict.fromkeys(calls, 0.0)
    made = dict.fromkeys(calls, 0)
    names = list(calls)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            call, gateway = calls[name]
            before = cpu_s([gateway.envoy.process.pid])
            latencies, _ = await saturate(call, seconds=seconds, in_flight=in_flight)
            spent[name] += cpu_s([gateway.envoy.process.pid]) - before
            made[name] += len(latencies)
    return {name: spent[name] / made[name] * 1e6 for name in calls}


def without_filter(gateway: LocalGateway, name: str) -> None:
    """Removes the HTTP filter `name` from the configuration `gateway`'s Envoy will start with
    (a baseline of that filter's cost; before `start()`)."""
    path = gateway.envoy.directory / "envoy.json"
    config = json.loads(path.read_text())
    removed = 0
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                manager = network_filter["typed_config"]
                filters = manager.get("http_filters", [])
                manager["http_filters"] = [f for f in filters if f["name"] != name]
                removed += len(filters) - len(manager["http_filters"])
    assert removed, f"no filter {name} in {path}"
    path.write_text(json.dumps(config))


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
                "LOG_LEVEL": args.log_level,
                **UNREACHED_RATE_LIMITS,
            },
            separate_sinks=True,
        )
        await asyncio.to_thread(system.start)
        # No local floor nor per-client read limit (the load comes from one client): they would
        # cap what is measured; their filters still run.
        unbounded = 1_000_000
        # Routes and transcoding only; the second without its first filter (its cost).
        plain, unfiltered = (
            LocalGateway(
                directory / name,
                redis_url=redis.url,
                secrets=system.gateway_secrets,
                auth=False,
                rate_limit=False,
                local_limit_per_s=unbounded,
                reads_per_client_per_s=unbounded,
            )
            for name in ("plain", "unfiltered")
        )
        complete, other = (
            LocalGateway(
                directory / name,
                redis_url=redis.url,
                secrets=system.gateway_secrets,
                local_limit_per_s=unbounded,
                reads_per_client_per_s=unbounded,
                graphql=graphql,
            )
            for name, graphql in (("complete", True), ("complete-2", False))
        )
        # The limits a deployment has (GatewayConfig's defaults).
        deployed = LocalGateway(
            directory / "deployed",
            redis_url=redis.url,
            secrets=system.gateway_secrets,
            local_limit_per_s=DEPLOYED["local_limit_per_s"],
            reads_per_client_per_s=DEPLOYED["reads_per_client_per_s"],
        )
        without_filter(unfiltered, CLIENT_FILTER)
        gateways = [plain, unfiltered, complete, other, deployed]
        for gateway in gateways:
            await asyncio.to_thread(gateway.start)
            await asyncio.to_thread(gateway.wait_for_healthy)

        await revoke_earlier_sessions(system, args.revoked)
        shop = Shop(system)
        session = await shop.register()
        metadata = [("authorization", f"Bearer {session.access_token}")]
        request = user_service_pb2.GetProfileRequest()

        bare_port = free_port()
        async with grpc.aio.insecure_channel(system.address("user")) as once:
            answer = await user_service_pb2_grpc.UserServiceStub(once).GetProfile(
                request, metadata=metadata, timeout=5
            )
        bare = ManagedProcess(
            "bare",
            [sys.executable, "-c", BARE_SERVER, str(bare_port), answer.SerializeToString().hex()],
            directory=directory / "bare",
            ready=lambda: accepts(bare_port),
        )
        await asyncio.to_thread(bare.start)

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

        def rest_call(url: str, tokens: list[str] | None = None) -> Call:
            """GET /v1/users/me with the one session's token, or each of `tokens` in turn."""
            turn = itertools.cycle(tokens or [session.access_token])

            async def call() -> None:
                headers = {"authorization": f"Bearer {next(turn)}"}
                async with http.get(f"{url}/v1/users/me", headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")

            return call

        customers = [(await shop.register()).access_token for _ in range(args.users)]

        # What GET /v1/users/me answers (a User), as GraphQL fields.
        me = (
            "{ me { userId email displayName roles creditLimit { amountMinor currencyCode } "
            "creditAvailable { amountMinor currencyCode } } }"
        )

        def graphql_call(url: str) -> Call:
            async def call() -> None:
                async with http.post(f"{url}/graphql", json={"query": me}) as response:
                    answer = await response.json()
                    if response.status != 200 or "errors" in answer:
                        raise RuntimeError(f"{url}: {response.status} {answer}")

            return call

        bare_call, bare_channel = grpc_call(f"127.0.0.1:{bare_port}")
        direct, direct_channel = grpc_call(system.address("user"))
        through, envoy_channel = grpc_call(plain.address)
        unfiltered_call, unfiltered_channel = grpc_call(unfiltered.address)
        paths = {
            "bare": bare_call,
            "direct": direct,
            "envoy_grpc": through,
            "rest": rest_call(plain.url),
            "rest_auth": rest_call(complete.url),
            "rest_users": rest_call(deployed.url, customers),
            "graphql": graphql_call(complete.url),
        }
        pids = {
            "loadgen": os.getpid(),
            "user": system.processes["user"].process.pid,
            "auth": system.processes["auth"].process.pid,
        }
        through_gateway = {
            "envoy_grpc": plain,
            "rest": plain,
            "rest_auth": complete,
            "rest_users": deployed,
            "graphql": complete,
        }
        assert complete.graphql is not None
        hive = {"graphql": complete.graphql.process.pid}
        fixed: dict[str, list[float]] = {}
        rates: dict[str, float] = {}
        saturated: dict[str, tuple[list[float], float]] = {}
        # CPU per call (us), by process, of each path.
        per_call: dict[str, dict[str, float]] = {}
        try:
            for name, call in paths.items():
                # A gateway with a deployment's limits sheds what passes its floor (429): that
                # path is measured at the fixed rate only, and its CPU over that run.
                limited = name == "rest_users"
                if limited:
                    await at_rate(call, rate=args.rate, seconds=1.0)  # warm-up
                else:
                    await saturate(call, seconds=1.0, in_flight=args.in_flight)  # warm-up
                via = through_gateway.get(name)
                measured = {**pids, **({"envoy": via.envoy.process.pid} if via else {})}
                if name == "graphql":
                    measured |= hive
                if name == "bare":
                    measured = {"loadgen": pids["loadgen"], "bare": bare.pid}
                before = {role: cpu_s([pid]) for role, pid in measured.items() if pid}
                most = ""
                if limited:
                    rates[name] = args.rate
                    fixed[name] = await at_rate(call, rate=rates[name], seconds=args.seconds)
                    calls = len(fixed[name])
                else:
                    saturated[name] = latencies, rps = await saturate(
                        call, seconds=args.seconds, in_flight=args.in_flight
                    )
                    calls = len(latencies)
                    most = (
                        f" | most: {rps:5.0f} requests/s  p50 {percentile(latencies, 50):5.2f} ms"
                        f"  p99 {percentile(latencies, 99):6.2f} ms"
                    )
                per_call[name] = {
                    role: (cpu_s([pid]) - before[role]) / calls * 1e6
                    for role, pid in measured.items()
                    if pid
                }
                cpu = "  ".join(f"{role} {us:.0f}" for role, us in per_call[name].items())
                if not limited:
                    # At the fixed rate, or at half the most it sustains if that is less: a
                    # path past its limit would show only its queue.
                    rates[name] = min(args.rate, rps / 2)
                    fixed[name] = await at_rate(call, rate=rates[name], seconds=args.seconds)
                print(
                    f"{name:<11} at {rates[name]:3.0f}/s: "
                    f"p50 {percentile(fixed[name], 50):5.2f} ms  "
                    f"p99 {percentile(fixed[name], 99):6.2f} ms{most} | CPU us/call: {cpu}",
                    flush=True,
                )
            filter_cpu = await alternated(
                {"with": (through, plain), "without": (unfiltered_call, unfiltered)},
                rounds=6,
                seconds=args.seconds / 4,
                in_flight=args.in_flight,
            )
            print(
                "client-address filter, Envoy's CPU us/call in alternating bursts: "
                + "  ".join(f"{name} {us:.1f}" for name, us in filter_cpu.items()),
                flush=True,
            )
            revoked = await revocations(shop, [complete, other], redis.url, logouts=args.logouts)
        finally:
            await shop.close()
            await http.close()
            await bare_channel.close()
            await direct_channel.close()
            await envoy_channel.close()
            await unfiltered_channel.close()
            await asyncio.to_thread(bare.stop)
    finally:
        for gateway in gateways:
            await asyncio.to_thread(gateway.stop)
        if system is not None:
            await asyncio.to_thread(system.stop)
        await asyncio.to_thread(redis.remove)
        await asyncio.to_thread(broker.remove)

    rps = {name: r for name, (_, r) in saturated.items()}

    def overhead(p50: Callable[[str], float]) -> float:
        return p50("rest_auth") - p50("rest")

    fixed_overhead = overhead(lambda name: percentile(fixed[name], 50))
    user_us, bare_us = per_call["direct"]["user"], per_call["bare"]["bare"]
    saturated_overhead = overhead(lambda name: percentile(saturated[name][0], 50))
    # What the client-address filter costs Envoy per call: with it, less without it.
    filter_us = filter_cpu["with"] - filter_cpu["without"]
    print(
        f"RESULT ref_ms={reference_ms():.0f} bare_rps={rps['bare']:.0f} "
        f"direct_rps={rps['direct']:.0f} "
        f"envoy_grpc_rps={rps['envoy_grpc']:.0f} rest_rps={rps['rest']:.0f} "
        f"rest_auth_rps={rps['rest_auth']:.0f} "
        f"graphql_rps={rps['graphql']:.0f} "
        f"rest_users_p50_ms={percentile(fixed['rest_users'], 50):.2f} "
        f"rest_users_p99_ms={percentile(fixed['rest_users'], 99):.2f} "
        f"auth_overhead_p50_ms={fixed_overhead:.2f} "
        f"auth_overhead_p50_saturated_ms={saturated_overhead:.2f} "
        f"revocation_p99_ms={percentile([r.refused_ms for r in revoked], 99):.0f} "
        f"user_cpu_us={user_us:.0f} bare_cpu_us={bare_us:.0f} "
        f"client_filter_envoy_us={filter_us:.1f}"
    )
    print(f"ratio: user service / bare grpc.aio server, CPU per call {user_us / bare_us:.2f}")
    print(f"ratio: rest_auth/rest throughput {rps['rest_auth'] / rps['rest']:.2f}")
    print(
        "ratio: Envoy's CPU per call with the client-address filter / without "
        f"{filter_cpu['with'] / filter_cpu['without']:.3f}"
    )
    users_p50, auth_p50 = (percentile(fixed[n], 50) for n in ("rest_users", "rest_auth"))
    print(f"ratio: rest_users/rest_auth p50 at {args.rate:g}/s {users_p50 / auth_p50:.2f}")
    print(f"ratio: graphql/rest_auth throughput {rps['graphql'] / rps['rest_auth']:.2f}")
    picture = charts.percentiles(
        "bench-gateway.png", fixed, title=f"Latency per path at {args.rate:g} calls/s"
    )
    print(f"picture: {picture}")
    print(
        f"revocations, {args.revoked} revoked before, {len(revoked)} logouts (ms from the start):"
    )
    for stage in ("answered_ms", "published_ms", "refused_ms"):
        figures = [getattr(r, stage) for r in revoked]
        print(
            f"  {stage.removesuffix('_ms'):<9} p50 {percentile(figures, 50):5.0f}  "
            f"p99 {percentile(figures, 99):5.0f}  max {max(figures):5.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per path")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rate", type=float, default=300.0, help="calls/s, for latency")
    parser.add_argument("--revoked", type=int, default=10_000, help="sessions revoked before")
    parser.add_argument("--logouts", type=int, default=100, help="revocations timed")
    parser.add_argument("--users", type=int, default=200, help="customers of rest_users")
    add_log_level(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
