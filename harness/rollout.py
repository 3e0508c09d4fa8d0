"""A rolling restart of the local system: every instance replaced in turn, none unavailable.

For each instance of each service (all of them, or those named), one at a time:
1. a new process is started (new instance id, new port) and waited for: SERVING on its gRPC
   health, registered, and routed by Envoy (it passed the gateway's own health checks);
2. the old one gets SIGTERM: it drains (DRAINING in the registry, so Envoy sends it no new
   calls), leaves the registry, lets its in-flight calls finish and exits;
3. the next instance waits until Envoy routes to the old one no more.

A service never has fewer instances taking traffic than before (the new one starts first, as
compose.yaml's `update_config: order: start-first`). `make rollout` asks the system `make up`
runs to do this (tools/rollout.py); the tests call `roll()` directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from harness.gateway import LocalGateway
from harness.supervisor import Supervisor
from harness.system import System

__all__ = ["roll"]


def roll(
    system: System,
    gateway: LocalGateway,
    services: Sequence[str] = (),
    *,
    supervisor: Supervisor | None = None,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Replaces every instance of `services` (all if none), one at a time; returns how long each
    replacement took, in seconds."""
    unknown = set(services) - set(system.services)
    if unknown:
        raise ValueError(f"no such service: {', '.join(sorted(unknown))}")
    took = []
    for service in services or system.services:
        for old in system.instances(service):
            started = time.monotonic()
            new = system.replace(old)
            if supervisor is not None:
                supervisor.watch(new.process)
            gateway.wait_for_endpoint(service, new.address)
            if supervisor is not None:
                supervisor.unwatch(old.process)
            old.stop()
            gateway.wait_for_endpoint(service, old.address, present=False)
            took.append(time.monotonic() - started)
            log(f"{service}: {old.process.name} replaced by {new.process.name} in {took[-1]:.1f} s")
    return took
