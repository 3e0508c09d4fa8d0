"""Zero-downtime deployments: a rolling restart of every service (two instances each, the
gateway's own services included) under 100 requests per second through the gateway (public
reads, authenticated reads and orders), and every request answered.

This module runs its own Redis, two instances of every service and a gateway: it replaces
every one of those instances.
"""

from __future__ import annotations

import asyncio

import pytest

from harness.gateway import LocalGateway
from harness.rollout import roll
from harness.system import UNREACHED_RATE_LIMITS, UNREACHED_READS_PER_CLIENT
from tests.e2e.worlds import Traffic, customer, own_system


@pytest.fixture(scope="module")
def world(rabbitmq, tmp_path_factory):
    with own_system(rabbitmq, tmp_path_factory.mktemp("rollout"), **UNREACHED_RATE_LIMITS) as (
        redis,
        system,
    ):
        gateway = LocalGateway(
            system.directory.parent / "gateway",
            redis_url=redis.url,
            secrets=system.gateway_secrets,
            reads_per_client_per_s=UNREACHED_READS_PER_CLIENT,
        )
        try:
            for service in system.services:
                system.add_instance(service, f"{service}-2")
            gateway.start()
            gateway.wait_for_healthy(2)
            yield system, gateway
        finally:
            gateway.stop()


async def test_a_rolling_restart_of_every_service_answers_every_request(world, record_figure):
    system, gateway = world
    token, _, product_id = await customer(system)
    traffic = Traffic(gateway.url, token, product_id)
    before = {s: [p.process.name for p in system.instances(s)] for s in system.services}

    done = asyncio.Event()
    sending = asyncio.create_task(traffic.run(seconds=300, until=done))
    await asyncio.sleep(3)
    took = await asyncio.to_thread(roll, system, gateway)
    await asyncio.sleep(3)
    done.set()
    await sending  # every request sent has its answer

    after = {s: [p.process.name for p in system.instances(s)] for s in system.services}
    assert all(not set(before[s]) & set(after[s]) for s in system.services), after
    answered = sum(traffic.outcomes.values())
    print(
        f"rolling restart of {len(took)} instances in {sum(took):.0f} s "
        f"({min(took):.1f}-{max(took):.1f} s each): {traffic.outcomes['ok']} of {answered} "
        f"answered; failures: {traffic.failures[:5]}"
    )
    record_figure(
        f"rolling restart of {len(took)} instances: {traffic.outcomes['ok']:,} of "
        f"{answered:,} answered, {traffic.outcomes['failed']} failed",
        answered=traffic.outcomes["ok"],
        sent=answered,
        instances=len(took),
    )
    assert answered >= 100 * sum(took) * 0.9, "less traffic than asked for: nothing proven"
    assert traffic.outcomes["failed"] == 0, traffic.failures[:10]
