"""The console's HTTP face: aiohttp handlers that turn a request into a use case's call and its
result into a page (Jinja2, autoescaped) or an htmx fragment, and `application()`, which routes
to them and names each route.

Here are signing in and out, the live system (its page and the fragment that refreshes it), one
request's story and the static files; the pages of dead letters, parked messages and sagas are
in services.console.repairs, the fault switches' in services.console.faults. Pages render
through services.console.pages; every answer passes the middlewares of ordermesh.web.site (the
security headers; a session, required by route name).

GET never changes anything; each action is a POST of a form (its CSRF token a hidden field, or
htmx's X-CSRF-Token header), answered by a redirect to the page it came from with its outcome.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from ordermesh.errors import DomainError, InvalidArgument, Unauthenticated
from ordermesh.logging import get_logger
from ordermesh.web.assets import Asset
from ordermesh.web.security import CSRF_FIELD
from ordermesh.web.sessions import SignedOut, new_token
from ordermesh.web.site import (
    ASSETS,
    SESSION,
    SITE,
    STATIC_ROUTE,
    Site,
    check_post,
    guarded,
    signed_in,
    static,
)

from services.console import faults, repairs
from services.console.pages import CONSOLE, PAGES, PREFIX, TEMPLATES, environment, render, see
from services.console.service import Console, NotAnAdmin

# TEMPLATES (services.console.pages') is named here too: what mounts or tests the console
# imports this module alone.
__all__ = [
    "COOKIE",
    "LIVE_REFRESH_ROUTE",
    "LOGIN_COOKIE",
    "PUBLIC_ROUTES",
    "TEMPLATES",
    "application",
]

log = get_logger(__name__)

# The session's cookie: its id, all the browser holds of it (ordermesh.web.sessions).
COOKIE = "console_session"
# The routes served without a session, by name: the console's bare root (a redirect), the
# sign-in page and form (and the static files, ordermesh.web.site's). A route with another name,
# or none (a request that matches no route), needs a session.
PUBLIC_ROUTES = frozenset({"root", "login"})
# The live page's refresh, which is not an admin's use of the console.
LIVE_REFRESH_ROUTE = "live_fragment"
# The sign-in form's own CSRF token (there is no session yet), for 10 minutes.
LOGIN_COOKIE = "console_login"
LOGIN_TOKEN_S = 600


# Signing in and out.


async def _root(_: web.Request) -> web.StreamResponse:
    return see("/")


def _login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = new_token()
    response = render(request, "login.html", status=status, login_token=token, error=error)
    site = request.app[SITE]
    response.set_cookie(LOGIN_COOKIE, token, **site.cookie_attributes(request, LOGIN_TOKEN_S))
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is not None:
        return see("/")
    ended = "Your session ended: sign in again." if request.query.get("ended") else ""
    return _login_page(request, error=ended)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    try:
        check_post(
            request, sent if isinstance(sent, str) else None, request.cookies.get(LOGIN_COOKIE, "")
        )
    except web.HTTPForbidden:
        error = "This sign-in form expired, or did not come from this console: sign in again."
        return _login_page(request, error=error, status=403)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    try:
        session = await request.app[CONSOLE].sign_in(email, password)
    except NotAnAdmin as exc:
        return _login_page(request, error=str(exc), status=403)
    except (Unauthenticated, InvalidArgument):
        return _login_page(request, error="The e-mail or the password is wrong.", status=401)
    except DomainError as exc:
        log.warning("console sign-in failed", error=str(exc))
        return _login_page(request, error=f"Cannot sign in now: {exc}", status=503)
    response = see("/")
    response.set_cookie(COOKIE, session.id, **request.app[SITE].cookie_attributes(request))
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    await request.app[CONSOLE].sign_out(request[SESSION])
    response = see("/login")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


# The live system.


async def live(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    return render(
        request,
        "live.html",
        live=await console.live(),
        faults_on=await console.faults_on(),
        refresh_s=console.settings.console_refresh_s,
    )


async def live_fragment(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    return render(
        request, "_live.html", live=await console.live(), faults_on=await console.faults_on()
    )


# One request's story.


async def story(request: web.Request) -> web.StreamResponse:
    key = request.query.get("id", "").strip()
    if not key:
        return render(request, "story.html", key="", story=None, error="")
    try:
        found = await request.app[CONSOLE].story(request[SESSION], key)
    except SignedOut:
        raise
    except DomainError as exc:
        return render(request, "story.html", key=key, story=None, error=str(exc), status=400)
    return render(request, "story.html", key=key, story=found, error="")


def _error_page(request: web.Request, error: str, status: int) -> web.Response:
    return render(request, "error.html", error=error, status=status)


def application(console: Console, *, assets: Mapping[str, Asset]) -> web.Application:
    """The console, to be mounted at PREFIX (`ordermesh.grpc.serve(apps={PREFIX: ...})`).

    Every route is named: the middlewares tell routes apart by name (PUBLIC_ROUTES,
    LIVE_REFRESH_ROUTE)."""
    app = web.Application(middlewares=[guarded, signed_in])
    app[SITE] = Site(
        prefix=PREFIX,
        cookie=COOKIE,
        sessions=console.sessions,
        error_page=_error_page,
        public=PUBLIC_ROUTES,
        passive=frozenset({LIVE_REFRESH_ROUTE}),
        origin=console.settings.console_origin,
    )
    app[CONSOLE] = console
    app[ASSETS] = dict(assets)
    app[PAGES] = environment(assets)
    router = app.router
    router.add_get("", _root, name="root")
    router.add_get("/", live, name="live")
    router.add_get("/fragments/live", live_fragment, name="live_fragment")
    # One path, two methods: one route name (aiohttp names the path's resource).
    router.add_get("/login", login_form, name="login")
    router.add_post("/login", sign_in, name="login")
    router.add_post("/logout", sign_out, name="sign_out")
    router.add_get("/story", story, name="story")
    router.add_get("/messages", repairs.messages, name="messages")
    router.add_get(
        "/messages/{service}/dead-letters/{event_id}", repairs.dead_letter, name="dead_letter"
    )
    router.add_get(
        "/messages/{service}/parked/{event_id}", repairs.parked_message, name="parked_message"
    )
    router.add_post("/messages/{service}/dead-letters/replay", repairs.replay, name="replay")
    router.add_post("/messages/{service}/dead-letters/discard", repairs.discard, name="discard")
    router.add_post("/messages/{service}/parked/unpark", repairs.unpark, name="unpark")
    router.add_get("/sagas", repairs.sagas, name="sagas")
    router.add_get("/sagas/{service}/{saga_id}", repairs.saga, name="saga")
    router.add_post(
        "/sagas/{service}/{saga_id}/retry",
        repairs.retry_compensation,
        name="retry_compensation",
    )
    router.add_post("/sagas/{service}/{saga_id}/resolve", repairs.resolve_saga, name="resolve_saga")
    router.add_get("/faults", faults.faults, name="faults")
    router.add_post("/faults/{switch}/on", faults.turn_on, name="fault_on")
    router.add_post("/faults/{switch}/off", faults.turn_off, name="fault_off")
    router.add_get("/static/{digest}/{name}", static, name=STATIC_ROUTE)
    return app
