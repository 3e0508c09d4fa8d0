"""A process is ready only when every probe of its dependencies passed in the latest check."""

import asyncio

from ordermesh.health import Readiness


async def passes() -> None:
    return None


async def refuses() -> None:
    raise ConnectionRefusedError("connection refused")


async def hangs() -> None:
    await asyncio.sleep(60)


async def test_ready_when_every_probe_passes():
    readiness = Readiness({"redis": passes, "rabbitmq": passes})

    assert await readiness.check()
    assert readiness.failures == {}


async def test_not_ready_before_the_first_check():
    assert not Readiness({"redis": passes}).ready


async def test_one_failing_probe_makes_it_unready_and_says_why():
    readiness = Readiness({"redis": passes, "rabbitmq": refuses})

    assert not await readiness.check()
    assert readiness.failures == {"rabbitmq": "ConnectionRefusedError: connection refused"}


async def test_a_hanging_probe_fails_after_the_timeout():
    readiness = Readiness({"rabbitmq": hangs}, timeout_s=0.05)

    assert not await readiness.check()
    assert readiness.failures["rabbitmq"] == "TimeoutError"


async def test_readiness_follows_the_dependency_back():
    state = {"up": False}

    async def flaky() -> None:
        if not state["up"]:
            raise ConnectionError("down")

    readiness = Readiness({"redis": flaky})
    assert not await readiness.check()
    state["up"] = True
    assert await readiness.check()
