"""What a verification breaks, and when, after a calm part of the run (a quarter of it, with no
fault: what the system does when nothing breaks):

- kills (`make up`, compose): one instance of every service that runs more than one killed in
  turn, as a crash would (`tools.chaos`: make up's processes, or a compose project's
  containers), spread evenly over the rest of the run, so that each victim is back before the
  next service loses one. A service with a single instance is not killed (that would be an
  outage, not an individual failure), and the report says so;
- switches (any deployment with fault switches, through the operator API as its admin): each
  service an order's flow reaches fails for a while in turn, its RPCs answered late and a
  share of them refused UNAVAILABLE, its message handlers failing (SWITCHED), each for at
  most WINDOW_S, in a slot of its own; every switch turned on is turned off again, also when
  the run is cut short."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tools.chaos import Refused, Target
from tools.containers import EngineError
from tools.verify.api import Api

__all__ = [
    "SWITCHED",
    "WINDOW_S",
    "Kill",
    "Switcher",
    "Switching",
    "kill_in_turn",
    "switch_in_turn",
    "victims",
]

# What a service's failure is made of (each switch and its settings, as the operator API takes
# them): what the system is built to ride out. The gateway retries a refused call that is safe
# to send again on other instances (twice), which the switches fail as often: of 10 %, 0.1 %
# stay refused; a failed delivery is retried after 1, 5 and 30 s.
SWITCHED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("rpc-latency", {"latencyMs": 100}),
    ("rpc-errors", {"percent": 10, "status": "UNAVAILABLE"}),
    ("handler-fails", {}),
)
# The longest a service fails: well under the subscriptions' retries (1 + 5 + 30 s), so that a
# message failing all the while is taken at its last attempt, not dead-lettered.
WINDOW_S = 10.0


@dataclass
class Kill:
    service: str
    victim: str
    at_s: float = 0.0  # seconds since the run began, when it was killed
    said: str = ""
    error: str = ""


def victims(instances: dict[str, list[str]]) -> tuple[list[Kill], list[str]]:
    """The first instance of each service that has more than one, and the services that have
    one (or none) and are left alone."""
    chosen = [Kill(s, names[0]) for s, names in sorted(instances.items()) if len(names) > 1]
    alone = sorted(s for s, names in instances.items() if len(names) <= 1)
    return chosen, alone


async def kill_in_turn(
    target: Target,
    kills: Sequence[Kill],
    *,
    calm_s: float,
    seconds: float,
    now_s: Callable[[], float],
) -> None:
    """Kills each of `kills` in turn, spread evenly over the run after its first `calm_s`
    (`now_s()`: seconds since it began)."""
    for k, kill in enumerate(kills):
        delay = calm_s + (k + 1) * (seconds - calm_s) / (len(kills) + 1) - now_s()
        if delay > 0:
            await asyncio.sleep(delay)
        kill.at_s = now_s()
        try:
            kill.said = await asyncio.to_thread(target.crash, kill.victim)
        except (Refused, EngineError) as exc:
            kill.error = str(exc)


@dataclass
class Switching:
    service: str
    at_s: float = 0.0  # seconds since the run began, when its switches were on
    until_s: float = 0.0  # ... and when they were off again
    said: str = ""
    error: str = ""


def _slots(count: int, calm_s: float, seconds: float) -> tuple[list[float], float]:
    """When each of `count` services' failures starts, and how long each lasts: centred in
    slots of their own after the calm part, half a slot long (at most WINDOW_S)."""
    slot = (seconds - calm_s) / max(1, count)
    window = min(WINDOW_S, slot / 2)
    return [calm_s + k * slot + (slot - window) / 2 for k in range(count)], window


class Switcher:
    """The fault switches a verification turns, through the operator API as its admin."""

    def __init__(self, admin: Api, token: str, run_id: str):
        self._admin, self._token, self._run = admin, token, run_id

    async def usable(self, service: str) -> str:
        """Why `service`'s switches cannot be turned ("" if they can): the deployment has
        none, or the caller may not."""
        answer = await self._admin.call(
            "GET", f"/v1/ops/{service}/fault-switches", token=self._token
        )
        return "" if answer.ok else f"{answer.status} {answer.error or answer.body}"

    async def turn(self, service: str, switch: str, on: bool, settings: dict[str, Any]) -> str:
        """Turns `switch` on (with `settings`) or off for `service`; "" or what went wrong."""
        verb = "turnOn" if on else "turnOff"
        body: dict[str, Any] = {"reason": f"make verify {self._run}"}
        if on and settings:
            body["settings"] = settings
        answer = await self._admin.call(
            "POST", f"/v1/ops/{service}/fault-switches/{switch}:{verb}", body, token=self._token
        )
        said = answer.error or answer.body
        return "" if answer.ok else f"{switch} {verb}: {answer.status} {said}"


async def switch_in_turn(
    switcher: Switcher,
    plan: Sequence[Switching],
    *,
    calm_s: float,
    seconds: float,
    now_s: Callable[[], float],
) -> None:
    """Makes each service of `plan` fail in turn (SWITCHED), each in a slot of its own after the
    first `calm_s` (`now_s()`: seconds since the run began)."""
    starts, window = _slots(len(plan), calm_s, seconds)
    for start, failing in zip(starts, plan, strict=True):
        if (delay := start - now_s()) > 0:
            await asyncio.sleep(delay)
        failing.at_s = now_s()
        try:
            errors = [await switcher.turn(failing.service, s, True, kw) for s, kw in SWITCHED]
            failing.error = "; ".join(e for e in errors if e)
            failing.said = f"{failing.service} failing: " + ", ".join(
                _shown(s, kw) for (s, kw), e in zip(SWITCHED, errors, strict=True) if not e
            )
            await asyncio.sleep(max(0.0, start + window - now_s()))
        finally:
            # Off again, also when the run is cut short (each switch: it may have been on).
            errors = [await switcher.turn(failing.service, s, False, {}) for s, _ in SWITCHED]
            failing.until_s = now_s()
            failing.error = "; ".join(e for e in [failing.error, *errors] if e)


def _shown(switch: str, settings: dict[str, Any]) -> str:
    return switch + "".join(f" {k} {v}" for k, v in settings.items())
