"""What a verification breaks, and when: one instance of every service that runs more than one
killed in turn, as a crash would (`tools.chaos`: make up's processes, or a compose project's
containers), the kills spread evenly over the run after a calm part (a quarter of it, with no
fault: what the system does when nothing breaks), so that each victim is back before the next
service loses one. A service with a single instance is not killed (that would be an outage,
not an individual failure), and the report says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.chaos import Refused, Target
from tools.containers import EngineError

__all__ = ["Kill", "kill_in_turn", "victims"]


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
