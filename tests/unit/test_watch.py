"""The one watch loop (ordermesh.watch.follow): a notice wakes it before the interval, the interval
wakes it without one, a failed round is logged and tried again, a lost source of notices is
listened to again, and cancelling it stops it and its listener. The sources here are objects in
memory; a Redis channel as a source is in tests/integration/test_registry.py and
tests/integration/test_edge_policy.py."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Callable

import pytest
from ordermesh.watch import NoticesLost, follow

SOON_S = 1.0  # far below every interval the tests set when a notice is what must wake it
NEVER_S = 60.0


def lines(output: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


class Rounds:
    """The work: counts its rounds, and lets a test wait for the next one."""

    def __init__(self, *, failing: int = 0) -> None:
        self.count = 0
        self._failing = failing
        self._done = asyncio.Queue[int]()

    async def __call__(self) -> None:
        self.count += 1
        self._done.put_nowait(self.count)
        if self.count <= self._failing:
            raise RuntimeError(f"round {self.count} failed")

    async def next(self, within_s: float = SOON_S) -> int:
        async with asyncio.timeout(within_s):
            return await self._done.get()


class Source:
    """A source of notices in memory: each listen is a subscription; the test sends notices,
    or makes the source fail (NoticesLost: an outage; anything else: a bug)."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.failures: asyncio.Queue[Exception] = asyncio.Queue()
        self._subscriptions: asyncio.Queue[int] = asyncio.Queue()
        self._count = 0
        self._notice: Callable[[], None] | None = None

    async def listen(self, notice: Callable[[], None], *, poll_s: float) -> None:
        self._count += 1
        self._notice = notice
        self._subscriptions.put_nowait(self._count)
        try:
            raise await self.failures.get()
        finally:
            self.ended.set()

    async def subscribed(self) -> int:
        """The number of the next subscription, once it is made."""
        async with asyncio.timeout(SOON_S):
            return await self._subscriptions.get()

    def send(self) -> None:
        assert self._notice is not None
        self._notice()


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    async with asyncio.timeout(SOON_S):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_notice_wakes_it_before_the_interval():
    notice = asyncio.Event()
    work = Rounds()
    task = asyncio.create_task(
        follow(work, notices=notice, refresh_s=NEVER_S, name="t", failed="f")
    )

    assert await work.next() == 1  # at once
    notice.set()
    assert await work.next() == 2
    await stopped(task)


async def test_a_notice_that_comes_during_a_round_is_not_lost():
    notice = asyncio.Event()
    rounds = Rounds()

    async def work() -> None:
        await rounds()
        if rounds.count == 1:
            notice.set()  # as if it came while the round ran

    task = asyncio.create_task(
        follow(work, notices=notice, refresh_s=NEVER_S, name="t", failed="f")
    )

    assert await rounds.next() == 1
    assert await rounds.next() == 2
    await stopped(task)


async def test_the_interval_wakes_it_without_a_notice():
    work = Rounds()
    task = asyncio.create_task(follow(work, refresh_s=0.01, name="t", failed="f"))

    for expected in (1, 2, 3):
        assert await work.next() == expected
    await stopped(task)


async def test_with_wait_first_the_first_round_comes_after_the_first_wait():
    notice = asyncio.Event()
    work = Rounds()
    task = asyncio.create_task(
        follow(work, notices=notice, refresh_s=NEVER_S, wait_first=True, name="t", failed="f")
    )

    await asyncio.sleep(0.05)
    assert work.count == 0
    notice.set()
    assert await work.next() == 1
    await stopped(task)


async def test_a_failed_round_is_logged_with_its_context_and_tried_again(output):
    work = Rounds(failing=1)
    task = asyncio.create_task(
        follow(work, refresh_s=0.01, name="t", failed="watch failed; it goes on", services=["a"])
    )

    assert await work.next() == 1
    assert await work.next() == 2
    await stopped(task)
    [failure] = [line for line in lines(output) if line["event"] == "watch failed; it goes on"]
    assert failure["level"] == "error"
    assert failure["services"] == ["a"]
    assert "RuntimeError: round 1 failed" in failure["exception"]


async def test_rounds_are_at_least_the_pause_apart():
    notice = asyncio.Event()
    started: list[float] = []

    async def work() -> None:
        started.append(time.monotonic())
        notice.set()  # a burst: there is always one more notice

    task = asyncio.create_task(
        follow(work, notices=notice, refresh_s=NEVER_S, pause_s=0.05, name="t", failed="f")
    )
    await asyncio.sleep(0.22)
    await stopped(task)

    assert 2 <= len(started) <= 5
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(started))


async def test_notices_from_a_source_wake_it():
    source = Source()
    work = Rounds()
    task = asyncio.create_task(
        follow(work, notices=source, refresh_s=NEVER_S, name="t", failed="f")
    )
    assert await work.next() == 1
    assert await source.subscribed() == 1

    source.send()
    assert await work.next() == 2
    await stopped(task)


async def test_a_lost_source_is_logged_and_listened_to_again(output):
    source = Source()
    task = asyncio.create_task(
        follow(Rounds(), notices=source, refresh_s=0.01, name="t", failed="f", lost="notices lost")
    )
    assert await source.subscribed() == 1

    source.failures.put_nowait(NoticesLost("connection reset"))
    assert await source.subscribed() == 2
    await stopped(task)

    [lost] = [line for line in lines(output) if line["event"] == "notices lost"]
    assert lost["level"] == "warning"
    assert lost["error"] == "connection reset"


async def test_a_lost_source_is_listened_to_again_soon_however_long_the_interval():
    """A service reads the edge policy every 5 s without a notice; after Redis restarts, its
    subscription is made again (and what was published meanwhile read) well before that."""
    source = Source()
    task = asyncio.create_task(
        follow(Rounds(), notices=source, refresh_s=NEVER_S, name="t", failed="f")
    )
    assert await source.subscribed() == 1

    source.failures.put_nowait(NoticesLost("connection reset"))
    assert await source.subscribed() == 2
    await stopped(task)


async def test_a_source_that_fails_unexpectedly_is_logged_and_listened_to_again(output):
    source = Source()
    task = asyncio.create_task(
        follow(Rounds(), notices=source, refresh_s=0.01, name="t", failed="f", lost="lost")
    )
    assert await source.subscribed() == 1

    source.failures.put_nowait(ValueError("a bug"))
    assert await source.subscribed() == 2
    await stopped(task)

    [bug] = [
        line for line in lines(output) if line["event"] == "notices not heard; listening again"
    ]
    assert "ValueError: a bug" in bug["exception"]
    assert not [line for line in lines(output) if line["event"] == "lost"]


async def test_cancelling_it_stops_it_and_its_listener():
    source = Source()
    work = Rounds()
    task = asyncio.create_task(follow(work, notices=source, refresh_s=0.01, name="t", failed="f"))
    assert await source.subscribed() == 1

    await stopped(task)
    count = work.count
    await asyncio.sleep(0.05)

    assert source.ended.is_set()
    assert work.count == count
