"""The console's two middlewares, which every answer passes, in this order:

- `guarded`: the security headers of services.console.security on every answer, errors and
  static files included, and `Cache-Control: no-store` on all but the static files; a failure
  no handler foresaw is logged and answered with the error page;
- `signed_in`: without a session, only the routes `PUBLIC_ROUTES` names are served (the
  console's root, the sign-in page, the static files); any other request, one that matches no
  route included, is not: a page redirects to the sign-in page, a fragment or an action answers
  401 (with `HX-Redirect` for htmx). Every POST but the sign-in form's is checked by
  `security.check_post` (403 when it fails); the sign-in form's is checked by its handler,
  against a token of its own cookie. A request extends its session, but the live page's own
  refreshes (`LIVE_REFRESH_ROUTE`) do not: a tab left open signs out when idle.

Routes are told apart by the names `application()` (services.console.web) gives them, never by
path: a path can be spelt many ways.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from chassis.logging import get_logger
from services.console import security
from services.console.pages import CONSOLE, FLASH, SESSION, render, see
from services.console.security import CSRF_FIELD, CSRF_HEADER, PREFIX
from services.console.service import SignedOut

__all__ = [
    "COOKIE",
    "LIVE_REFRESH_ROUTE",
    "PUBLIC_ROUTES",
    "check_post",
    "guarded",
    "is_https",
    "signed_in",
]

log = get_logger(__name__)

# The session's cookie: its id, all the browser holds of it (services.console.sessions).
COOKIE = "console_session"
# The routes served without a session, by name: the console's bare root (a redirect), the
# sign-in page and form, the static files. A route with another name, or none (a request that
# matches no route), needs a session.
PUBLIC_ROUTES = frozenset({"root", "login", "static"})
# The live page's refresh, which is not an admin's use of the console.
LIVE_REFRESH_ROUTE = "live_fragment"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    except Exception:  # a bug, or a dependency failing in a way not foreseen: logged, and
        # answered like any other page, with the security headers
        log.exception("console request failed", path=request.path)
        response = render(request, "error.html", error="Something went wrong.", status=500)
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(security.HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/") or response.status != 200:
        response.headers["Cache-Control"] = security.NO_STORE


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A request that matches no route has a SystemRoute, named None: it needs a session too.
    route = request.match_info.route.name
    if route in PUBLIC_ROUTES:
        return await handler(request)
    console = request.app[CONSOLE]
    refresh = route == LIVE_REFRESH_ROUTE
    session = await console.sessions.get(request.cookies.get(COOKIE), extend=not refresh)
    if session is None:
        return _unauthenticated(request)
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        check_post(request, sent if isinstance(sent, str) else None, session.csrf_token)
    request[SESSION] = session
    if request.method == "GET" and not _htmx(request):
        request[FLASH] = await console.sessions.take_flash(session.id)
    try:
        return await handler(request)
    except SignedOut:
        return _unauthenticated(request)


def _unauthenticated(request: web.Request) -> web.StreamResponse:
    """No session: a page goes to the sign-in page; a fragment or an action is refused."""
    if request.method == "GET" and not _htmx(request):
        response: web.StreamResponse = see("/login")
    else:
        response = web.Response(status=401, text="sign in first\n")
        response.headers["HX-Redirect"] = f"{PREFIX}/login"
    response.del_cookie(COOKIE, path=PREFIX)
    return response


def _htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def check_post(request: web.Request, sent: str | None, expected: str) -> None:
    """`security.check_post` of this request with the CSRF token `sent`; 403 if it fails."""
    try:
        security.check_post(
            expected_origin=_expected_origin(request),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            sent_token=sent,
            session_token=expected,
        )
    except security.CrossSite as exc:
        log.warning("console request refused", path=request.path, reason=str(exc))
        raise web.HTTPForbidden(text=f"refused: {exc}\n") from None


def is_https(request: web.Request) -> bool:
    """Whether the browser reached the console over https (`security.is_https`)."""
    return security.is_https(request.headers.get("X-Forwarded-Proto"), secure=request.secure)


def _expected_origin(request: web.Request) -> str:
    console = request.app[CONSOLE]
    return console.settings.console_origin.rstrip("/") or security.origin_of(
        https=is_https(request), host=request.host
    )
