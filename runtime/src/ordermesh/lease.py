"""A named lease in a service's store: one holder at a time among the instances that share it.

`held()` answers whether this owner holds the lease now, taking or renewing it in the store
only when half of its time-to-live has passed, so asking is free most of the time. An owner
that dies keeps the lease until its TTL expires; then another takes it over.
"""

from __future__ import annotations

import time

from ordermesh.store import Store

__all__ = ["Lease"]


class Lease:
    def __init__(self, store: Store, name: str, *, owner: str, ttl_s: float = 10.0):
        self._store = store
        self.name = name
        self._owner = owner
        self.ttl_s = ttl_s
        self._until = 0.0

    async def held(self) -> bool:
        now = time.monotonic()
        if now < self._until - self.ttl_s / 2:
            return True
        if await self._store.acquire_lease(self.name, self._owner, self.ttl_s):
            self._until = now + self.ttl_s
            return True
        return False
