"""The console's pages: the keys its application and requests keep what a page needs under, the
Jinja2 environment its templates render in (autoescaped, strict: a name a template uses and is
not given fails) with its filters, rendering a page, redirecting to one, and the two shapes of
a handler: a page of what a read gives (`shown`), an action that goes back with its outcome
(`act`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from ordermesh.errors import DomainError
from ordermesh.web import site
from ordermesh.web.assets import Asset
from ordermesh.web.sessions import SignedOut
from ordermesh.web.site import FLASH, SESSION

from services.console.service import Console

__all__ = [
    "CONSOLE",
    "PAGES",
    "PREFIX",
    "SAGA_STATUSES",
    "STATIC",
    "TEMPLATES",
    "act",
    "environment",
    "render",
    "see",
    "shown",
]

# Where the console is served, on its instance's HTTP port and at the gateway.
PREFIX = "/console"
TEMPLATES = Path(__file__).parent / "templates"
# Its static files (htmx, copied from tools/node's pinned `htmx.org` by `python -m
# tools.web_assets`, part of `make gen`; its stylesheet).
STATIC = Path(__file__).parent / "static"
# ops.v1's SagaStatus names but UNSPECIFIED, in the order the console offers them rather than
# the enum's: the parked first, then the live, then the ended (a unit test checks the set).
SAGA_STATUSES = ("NEEDS_OPERATOR", "COMPENSATING", "RUNNING", "COMPLETED", "COMPENSATED")

CONSOLE = web.AppKey("console", Console)
PAGES = web.AppKey("pages", jinja2.Environment)


# Formatting for the templates.


def _when(value: datetime | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _figure(value: float | None, shown: str = "{:.1f}") -> str:
    return "-" if value is None else shown.format(value)


def environment(assets: Mapping[str, Asset]) -> jinja2.Environment:
    """The templates' environment, its pages linking to `assets` by their hashed URLs."""
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    pages.globals.update(prefix=PREFIX, asset=assets, saga_statuses=SAGA_STATUSES)
    pages.filters.update(when=_when, figure=_figure)
    return pages


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page: `template` with `context`, and what every page shows (the signed-in admin, the
    CSRF token its forms send, the last action's outcome, the services in the menus)."""
    session = request.get(SESSION)
    console = request.app[CONSOLE]
    body = (
        request.app[PAGES]
        .get_template(template)
        .render(
            session=session,
            csrf=session.csrf_token if session else "",
            flash=request.get(FLASH, ""),
            operator_services=console.settings.operator_services,
            saga_services=console.settings.saga_services,
            **context,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def see(path: str, **query: str) -> web.Response:
    """A redirect (303) to a page of the console, never elsewhere."""
    target = f"{PREFIX}{path}"
    if query:
        target += "?" + urlencode({k: v for k, v in query.items() if v})
    return web.Response(status=303, headers={"Location": target})


async def shown(
    request: web.Request, template: str, read: Callable[[], Awaitable[Mapping[str, Any]]]
) -> web.StreamResponse:
    """A page of what `read()` gives; a failure shown on the page, with its status."""
    return await site.shown(request, read, lambda context: render(request, template, **context))


async def act(
    request: web.Request, back: web.Response, change: Callable[[], Awaitable[str]]
) -> web.StreamResponse:
    """Runs an action, `change()`, and goes back to `back`, with its outcome (or why it
    failed) shown."""
    console = request.app[CONSOLE]
    session = request[SESSION]
    try:
        outcome = await change()
    except SignedOut:
        raise
    except DomainError as exc:
        outcome = f"Not done: {exc}"
    await console.sessions.flash(session.id, outcome)
    return back
