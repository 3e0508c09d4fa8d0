"""One loop for everything that keeps up with a source: wait for a notice or the interval, then
do the work again (re-read, apply), as client-go's reflector is the one list-and-watch loop
every controller reuses.

`follow(work, refresh_s=..., ...)` runs `work()` (at once, or after a first wait), then again
at each notice and at the latest every `refresh_s`, until it is cancelled. What holds:
- a notice that arrives while the work runs is not lost: the next wait ends at once;
- a failure of the work is logged with its traceback and the loop goes on: the next round
  is the retry (what cannot be done now is not given up);
- notices from outside the process (`Notices`: `RedisNotices`, a Redis pub/sub channel;
  `FileNotices`, a file's changes) are listened for by a task of their own; when their source
  is lost, the interval alone keeps the work going and the source is subscribed to again every
  `refresh_s`;
- cancelling it ends it, and its listener with it.

Waits use asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a
cancellation that lands as the wait ends, and a loop that swallowed its cancellation would
never stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from asyncinotify import Inotify, Mask
from redis.exceptions import RedisError

from ordermesh.logging import get_logger

__all__ = ["FileNotices", "Notices", "NoticesLost", "RedisNotices", "follow"]

log = get_logger(__name__)

# How long a stop waits for a listener to end: a library call that swallowed its cancellation
# (redis-py's timeouts on 3.11 can) must not hold up a shutdown.
LISTENER_STOP_S = 2.0
# How soon a lost source of notices is subscribed to again, whatever the interval of the rounds:
# the subscription reads what was published while it was lost (a logout, in the edge policy),
# and attempts are made only while the source is lost.
RESUBSCRIBE_S = 0.5


class NoticesLost(Exception):
    """The source of notices went away (e.g. Redis is unreachable): listen again later."""


class Notices(Protocol):
    """A source of notices from outside the process."""

    async def listen(self, notice: Callable[[], None], *, poll_s: float) -> None:
        """Calls `notice()` at each notice until cancelled (checking on the source at least
        every `poll_s`); raises NoticesLost when the source is lost."""


class RedisNotices:
    """The messages published on a Redis pub/sub channel, as notices.

    With `subscribed_is_notice`, Redis's confirmation of each subscription is one too: what was
    published before it (while unsubscribed) is then read at once."""

    def __init__(
        self,
        pubsub: Callable[[], aioredis.client.PubSub],
        channel: str,
        *,
        subscribed_is_notice: bool = True,
    ):
        self._pubsub = pubsub
        self._channel = channel
        self._subscribed_is_notice = subscribed_is_notice
        # Set while subscribed to the channel (cleared when Redis is lost).
        self.listening = asyncio.Event()

    async def listen(self, notice: Callable[[], None], *, poll_s: float) -> None:
        pubsub = self._pubsub()
        try:
            await pubsub.subscribe(self._channel)
            while True:
                message = await pubsub.get_message(timeout=poll_s)
                if message is None:
                    continue
                if message["type"] == "subscribe":  # Redis confirmed the subscription
                    self.listening.set()
                    if not self._subscribed_is_notice:
                        continue
                notice()
        except (RedisError, OSError) as exc:
            self.listening.clear()
            raise NoticesLost(str(exc)) from exc
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


# What may change a file: written in place (heard once the writer closes it, not at each of its
# writes, which would read half a file), replaced by a rename (`python -m ordermesh.switches`
# writes beside and renames), created, removed, or its folder's `..data` link swapped (a
# Kubernetes ConfigMap volume).
_FILE_CHANGES = (
    Mask.CREATE | Mask.CLOSE_WRITE | Mask.ATTRIB | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
)


class FileNotices:
    """A file's changes, as notices (inotify on its folder, so that a file replaced or created
    is heard as one written in place). The folder gone or not watchable (no inotify instance
    left) raises NoticesLost: `follow`'s interval then reads the file alone."""

    def __init__(self, path: str | Path):
        self._path = Path(path)

    async def listen(self, notice: Callable[[], None], *, poll_s: float) -> None:
        name = self._path.name
        try:
            with Inotify() as inotify:
                inotify.add_watch(self._path.parent, _FILE_CHANGES)
                notice()  # what changed before the watch began
                async for event in inotify:
                    if event.mask & Mask.IGNORED:  # the folder was removed: its watch is gone
                        raise NoticesLost(f"{self._path.parent} is no longer watched")
                    changed = str(event.name) if event.name is not None else ""
                    # No name: the folder itself, or Q_OVERFLOW (events the kernel dropped, maybe
                    # this file's).
                    if changed in (name, "") or changed.startswith(".."):
                        notice()
        except OSError as exc:
            raise NoticesLost(str(exc)) from exc


async def follow(
    work: Callable[[], Awaitable[object]],
    *,
    refresh_s: float,
    name: str,
    failed: str,
    notices: asyncio.Event | Notices | None = None,
    lost: str = "",
    wait_first: bool = False,
    pause_s: float = 0.0,
    **context: Any,
) -> None:
    """Runs `work()` until cancelled: at once (after a first wait with `wait_first`), then at
    each notice and at the latest every `refresh_s`. `notices`: an event set in this process,
    or a source outside it (its listener task is named after `name`). A failure of the work is
    logged as `failed` with `context`, a lost source as `lost` (nothing if ""; the work's own
    log may already say that the source is down). `pause_s`: the least time between two
    rounds, so that a burst of notices costs one round, not one each."""
    wake = notices if isinstance(notices, asyncio.Event) else asyncio.Event()
    listener = None
    if notices is not None and not isinstance(notices, asyncio.Event):
        listener = asyncio.create_task(
            _listen(notices, wake, poll_s=refresh_s, lost=lost), name=f"{name} notices"
        )
    try:
        if wait_first:
            await _wait(wake, refresh_s)
        while True:
            wake.clear()
            try:
                await work()
            except Exception:  # logged with its traceback; the next round is the retry
                log.exception(failed, **context)
            if pause_s > 0:
                await asyncio.sleep(pause_s)
            await _wait(wake, refresh_s)
    finally:
        if listener is not None:
            listener.cancel()
            await asyncio.wait([listener], timeout=LISTENER_STOP_S)


async def _wait(wake: asyncio.Event, timeout_s: float) -> None:
    """Until `wake` is set or `timeout_s` has passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await wake.wait()


async def _listen(notices: Notices, wake: asyncio.Event, *, poll_s: float, lost: str) -> None:
    """Sets `wake` at each notice; subscribes again soon after the source is lost."""
    while True:
        try:
            await notices.listen(wake.set, poll_s=poll_s)
        except NoticesLost as exc:
            if lost:
                log.warning(lost, error=str(exc))
        except Exception:  # a bug in a source must not end the notices for good
            log.exception("notices not heard; listening again", source=type(notices).__name__)
        await asyncio.sleep(min(poll_s, RESUBSCRIBE_S))
