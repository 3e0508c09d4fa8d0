"""The page of fault switches (ordermesh.switches) and the actions that turn them on and off: what
`python -m ordermesh.switches` does from a shell, from the browser, in the flag file every
process of the system follows. Each action names its reason, is checked with the gateway as the
admin's (a revoked session is refused), and is logged with the admin's id; a deployment without
a flag file shows that it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from ordermesh.errors import InvalidArgument
from ordermesh.switches import CONTEXT, SETTINGS, STATUSES, SWITCHES
from ordermesh.web.site import SESSION

from services.console.pages import CONSOLE, act, render, see, shown

__all__ = ["faults", "turn_off", "turn_on"]


async def faults(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]

    async def read() -> Mapping[str, Any]:
        return {
            "switches": await console.fault_switches(),
            "context": CONTEXT,
            "settings": SETTINGS,
            "statuses": STATUSES,
        }

    if not console.settings.fault_flags_file:
        return render(request, "faults.html", switches=None)
    return await shown(request, "faults.html", read)


def _switch(request: web.Request) -> str:
    switch = request.match_info["switch"]
    if switch not in SWITCHES:
        raise web.HTTPNotFound(text=f"no such switch: {switch[:64]!r}\n")
    return switch


def _number(form: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    """A setting from the form, as the switch takes it (None when not given)."""
    text = str(form.get(name, "")).strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise InvalidArgument(f"{name} {text[:32]!r} is not a number") from None


async def turn_on(request: web.Request) -> web.StreamResponse:
    console, switch = request.app[CONSOLE], _switch(request)
    form = await request.post()

    async def change() -> str:
        conditions = {name: str(form.get(name, "")).strip() for name in CONTEXT[switch]}
        settings = {
            "latency_ms": _number(form, "latency_ms", int),
            "percent": _number(form, "percent", float),
            "http_status": _number(form, "http_status", int),
            "status": str(form.get("status", "")).strip() or None,
        }
        said = await console.turn_switch_on(
            request[SESSION],
            switch,
            conditions=conditions,
            settings=settings,
            reason=str(form.get("reason", "")),
        )
        return f"Turned {said}."

    return await act(request, see("/faults"), change)


async def turn_off(request: web.Request) -> web.StreamResponse:
    console, switch = request.app[CONSOLE], _switch(request)
    form = await request.post()

    async def change() -> str:
        said = await console.turn_switch_off(
            request[SESSION], switch, reason=str(form.get("reason", ""))
        )
        return f"Turned {said}."

    return await act(request, see("/faults"), change)
