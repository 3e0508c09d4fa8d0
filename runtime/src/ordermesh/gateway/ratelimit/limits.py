"""Which requests count against which limit, and how many each limit allows.

The gateway describes each request it asks about (Envoy's rate-limit descriptors, in the
vocabulary of ordermesh.gateway.ratelimits):
    (class=sign-in, remote_address=<client ip>)   Login, Register, RefreshToken
    (class=write, user=<user id>)                 every other call that changes state...
    (class=write, remote_address=<client ip>)     ...counted per user and per client address
A limit is named by a descriptor's class and the key after it; its counter is per value of
that key (one client address, one user) and per fixed window of its unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ordermesh.gateway.ratelimits import LIMIT_CLASS

__all__ = ["UNITS", "Limit", "Limits", "parse"]

UNITS = {"s": 1, "m": 60, "h": 3600}
RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


@dataclass(frozen=True)
class Limit:
    name: str  # "<class>:<key>", e.g. "sign-in:remote_address"
    requests: int
    unit_s: int

    def __str__(self) -> str:
        unit = next(u for u, s in UNITS.items() if s == self.unit_s)
        return f"{self.requests}/{unit}"


def parse(name: str, rate: str) -> Limit:
    """`parse("sign-in:remote_address", "10/m")`; ValueError naming the rate if malformed."""
    match = RATE.match(rate)
    if match is None:
        raise ValueError(f"rate limit {name}={rate!r}: expected <requests>/<s|m|h>, e.g. 10/m")
    return Limit(name, int(match.group(1)), UNITS[match.group(2)])


class Limits:
    def __init__(self, limits: Sequence[Limit]):
        self._by_name: Mapping[str, Limit] = {limit.name: limit for limit in limits}

    def of(self, entries: Sequence[tuple[str, str]]) -> tuple[Limit, str] | None:
        """The limit a descriptor falls under and the value it is counted by, if any."""
        if len(entries) != 2 or entries[0][0] != LIMIT_CLASS:
            return None
        (_, klass), (key, value) = entries
        limit = self._by_name.get(f"{klass}:{key}")
        return (limit, value) if limit is not None else None
