"""The registry on a real Redis: instances appear, renew, drain, vanish, and outlive outages."""

import asyncio
import json
import time

import pytest
import redis.asyncio
from ordermesh.registry import Instance, Registration, Registry, Watcher


@pytest.fixture
async def registry(redis_server, request):
    # A namespace per test: tests share the session's Redis and never see each other's entries.
    registry = Registry(redis_server.url, namespace=f"test-{request.node.name}")
    yield registry
    await registry.close()


def instance(n: int, service: str = "inventory") -> Instance:
    return Instance(service=service, instance_id=f"{service}-{n}", address=f"127.0.0.1:{9000 + n}")


async def eventually(condition, timeout_s: float = 10.0) -> float:
    """Waits until `condition()` (or what it returns, awaited) holds; returns how long it took."""
    started = time.monotonic()
    while True:
        holds = condition()
        if asyncio.iscoroutine(holds):
            holds = await holds
        if holds:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_instances_are_listed_while_registered_and_gone_after_stop(registry):
    first = Registration(registry, instance(1), ttl_s=3, interval_s=1)
    second = Registration(registry, instance(2), ttl_s=3, interval_s=1)
    await first.start()
    await second.start()
    assert [i.address for i in await registry.instances("inventory")] == [
        "127.0.0.1:9001",
        "127.0.0.1:9002",
    ]
    assert await registry.services() == ["inventory"]

    await first.stop()
    assert [i.instance_id for i in await registry.instances("inventory")] == ["inventory-2"]
    await second.stop()
    assert await registry.instances("inventory") == []


async def test_an_instance_that_stops_heartbeating_drops_out_within_its_ttl(registry):
    registration = Registration(registry, instance(1), ttl_s=1.0, interval_s=0.3)
    await registration.start()
    await asyncio.sleep(1.5)  # heartbeats keep it listed past its ttl
    assert len(await registry.instances("inventory")) == 1

    registration._task.cancel()  # what SIGKILL does to the heartbeat: no deregistration
    assert len(await registry.instances("inventory")) == 1  # listed while its lease runs

    async def gone() -> bool:
        return not await registry.instances("inventory")

    await eventually(gone, timeout_s=10.0)  # a bound on waiting; the TTL is 1 s


async def test_a_draining_instance_stays_listed_as_draining_until_it_stops(registry):
    registration = Registration(registry, instance(1), ttl_s=3, interval_s=1)
    await registration.start()
    await registration.drain()
    (listed,) = await registry.instances("inventory")
    assert listed.draining
    await registration.stop()
    assert await registry.instances("inventory") == []


async def test_watchers_hear_of_changes_at_once_not_only_when_they_poll(registry):
    seen: list[list[str]] = []
    watcher = Watcher(
        registry,
        ["inventory"],
        on_change=lambda _, instances: seen.append([i.instance_id for i in instances]),
        refresh_s=30.0,  # a poll would come far too late: only pub/sub can pass this test
    )
    await watcher.start()
    registration = Registration(registry, instance(1), ttl_s=3, interval_s=1)
    try:
        async with asyncio.timeout(5):
            await watcher.listening.wait()  # its subscription is in place
        await registration.start()
        await eventually(lambda: seen[-1:] == [["inventory-1"]], timeout_s=2.0)
        await registration.stop()
        await eventually(lambda: seen[-1:] == [[]], timeout_s=2.0)
    finally:
        await watcher.stop()
    assert seen == [[], ["inventory-1"], []]


async def test_redis_down_keeps_the_last_endpoints_and_registrations_come_back(redis_factory):
    """Through the outage and the restart of an empty Redis, the watcher never loses the
    instance: it keeps it while Redis is away and while heartbeats register it again."""
    server = redis_factory()
    registry = Registry(server.url, namespace="outage")
    seen: list[list[str]] = []
    watcher = Watcher(
        registry,
        ["inventory"],
        refresh_s=0.1,
        grace_s=2.0,
        on_change=lambda _, instances: seen.append([i.instance_id for i in instances]),
    )
    registration = Registration(registry, instance(1), ttl_s=2.0, interval_s=0.5)
    await registration.start()
    await watcher.start()
    try:
        assert [i.instance_id for i in watcher.instances("inventory")] == ["inventory-1"]

        server.kill()
        await asyncio.sleep(1.0)  # several failed refreshes and heartbeats
        assert [i.instance_id for i in watcher.instances("inventory")] == ["inventory-1"]

        server.start()  # empty (nothing is saved): only the heartbeat can register it again

        async def registered_again() -> bool:
            return [i.instance_id for i in await registry.instances("inventory")] == ["inventory-1"]

        await eventually(registered_again, timeout_s=5.0)
        await asyncio.sleep(2.5)  # past the grace period: what is listed is what registered
        assert [i.instance_id for i in watcher.instances("inventory")] == ["inventory-1"]
        assert seen == [["inventory-1"]]
    finally:
        await watcher.stop()
        await registration.stop()
        await registry.close()


async def test_an_entry_that_cannot_be_read_is_skipped_and_the_watch_goes_on(
    registry, redis_server, request
):
    """A malformed entry once stopped every watcher silently; one written by a newer version
    (a field this one does not know) must still be read."""
    namespace = f"test-{request.node.name}"
    good = Registration(registry, instance(1), ttl_s=5, interval_s=1)
    await good.start()
    newer = {**json.loads(instance(3).to_json()), "zone": "eu-west-1"}
    entries = {
        "inventory-bad": "{not json",
        "inventory-noport": json.dumps({**newer, "instance_id": "inventory-noport",
                                        "address": "127.0.0.1"}),
        "inventory-list": json.dumps([1, 2]),
        "inventory-3": json.dumps(newer),
    }  # fmt: skip
    raw = redis.asyncio.from_url(redis_server.url)
    expires_ms = int((time.time() + 60) * 1000)
    for id, entry in entries.items():
        await raw.zadd(f"{namespace}:leases:inventory", {id: expires_ms})
        await raw.set(f"{namespace}:instance:inventory:{id}", entry, px=60_000)
    await raw.aclose()
    watcher = Watcher(registry, ["inventory"], refresh_s=0.2)
    await watcher.start()
    try:
        assert [i.instance_id for i in watcher.instances("inventory")] == [
            "inventory-1",
            "inventory-3",
        ]
        later = Registration(registry, instance(4), ttl_s=5, interval_s=1)
        await later.start()
        await eventually(lambda: len(watcher.instances("inventory")) == 3)
        await later.stop()
    finally:
        await watcher.stop()
        await good.stop()


async def test_running_services_publish_their_breakers_states_for_make_status(system, redis_server):
    """What `make status` shows: each instance's circuit breakers, from its registration."""
    registry = Registry(redis_server.url)
    try:

        async def order_metadata() -> dict[str, str]:
            [order] = await registry.instances("order")
            return dict(order.metadata)

        await eventually(order_metadata, timeout_s=10)  # registered, with metadata
        metadata = await order_metadata()
    finally:
        await registry.close()
    assert metadata["breaker.inventory"] == "closed"
    assert metadata["breaker.user"] == "closed"
