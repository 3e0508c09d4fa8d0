"""A site served at the gateway (the operator console, the storefront): what it is (`Site`),
the two middlewares every answer passes, in this order, and its static files.

- `guarded`: the security headers of ordermesh.web.security on every answer, errors and static
  files included, and `Cache-Control: no-store` on all but the static files; a failure no
  handler foresaw is logged and answered with the site's error page;
- `signed_in`: the session of the request's cookie, looked up for every route but the static
  files. Without one, only the routes `Site.public` names are served (a page a visitor may see,
  the sign-in page and form); any other request, one that matches no route included, is not:
  the browser is sent to the sign-in page, `<prefix>/login` (303; `?ended=1` when it still held
  a session's cookie: its session ended), and htmx's requests are answered 401 with
  `HX-Redirect` there.
  Every POST of a signed-in route is checked by `security.check_post` (403 when it fails); a
  public route's POST (the sign-in form's) is checked by its handler, against a token of a
  cookie of its own (`check_post` here). A request extends its session, but the routes
  `Site.passive` names (a page refreshing itself) do not: a tab left open signs out when idle.

Routes are told apart by the names the site's application gives them, never by path: a path
can be spelt many ways.

While a request is handled, `browser_address` holds the browser's address as the gateway gave
it on the pages' hop (ordermesh.identity.CLIENT_HEADER): a site names it back on its calls of the
API, so that the gateway counts each browser's calls against its own limits, not the site's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ordermesh.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from ordermesh.identity import CLIENT_HEADER, INTERNAL_HEADER
from ordermesh.logging import get_logger
from ordermesh.web import security
from ordermesh.web.assets import Asset
from ordermesh.web.security import CSRF_FIELD, CSRF_HEADER
from ordermesh.web.sessions import Session, Sessions, SignedOut

__all__ = [
    "ASSETS",
    "FLASH",
    "SESSION",
    "SITE",
    "STATIC_ROUTE",
    "Site",
    "browser_address",
    "check_post",
    "guarded",
    "is_https",
    "naming_the_browser",
    "shown",
    "signed_in",
    "static",
    "status_of",
]

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
browser_address: ContextVar[str] = ContextVar("browser_address", default="")
# The site's static files' route, by name: served to anyone, without a session's lookup.
STATIC_ROUTE = "static"


@dataclass(frozen=True)
class Site:
    # Where it is served, on its instance's HTTP port and at the gateway ("/console").
    prefix: str
    # The session's cookie: its id, all the browser holds of it.
    cookie: str
    sessions: Sessions
    # A page for a failure: (request, what went wrong, status).
    error_page: Callable[[web.Request, str, int], web.Response]
    # The routes served without a session, by name (besides the static files).
    public: frozenset[str] = frozenset()
    # The routes that do not extend the session: a page's own refreshes, not a person's use.
    passive: frozenset[str] = frozenset()
    # Its origin as browsers name it (https://host:port); empty: the scheme the gateway saw
    # (X-Forwarded-Proto) and the Host the browser sent.
    origin: str = ""

    def cookie_attributes(
        self, request: web.Request, max_age_s: int | None = None
    ) -> dict[str, Any]:
        """The attributes of a cookie of this site, for the browser of `request`."""
        return security.cookie_attributes(
            path=self.prefix, secure=is_https(request), max_age_s=max_age_s
        )


SITE = web.AppKey("site", Site)
ASSETS = web.AppKey("assets", dict[str, Asset])
SESSION = web.RequestKey("session", Session)
FLASH = web.RequestKey("flash", str)


@web.middleware
async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    site = request.app[SITE]
    address = browser_address.set(request.headers.get(CLIENT_HEADER, ""))
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, site, exc)
        raise
    except Exception:  # a bug, or a dependency failing in a way not foreseen: logged, and
        # answered like any other page, with the security headers
        log.exception("page request failed", path=request.path)
        response = site.error_page(request, "Something went wrong.", 500)
    finally:
        browser_address.reset(address)
    _secure(request, site, response)
    return response


def _secure(request: web.Request, site: Site, response: web.StreamResponse) -> None:
    response.headers.update(security.HEADERS)
    if not request.path.startswith(f"{site.prefix}/static/") or response.status != 200:
        response.headers["Cache-Control"] = security.NO_STORE


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A request that matches no route has a SystemRoute, named None: it needs a session too.
    route = request.match_info.route.name
    if route == STATIC_ROUTE:
        return await handler(request)
    site = request.app[SITE]
    sent_id = request.cookies.get(site.cookie)
    session = await site.sessions.get(sent_id, extend=route not in site.passive)
    if session is None and route not in site.public:
        return _unauthenticated(request, site, ended=bool(sent_id))
    if session is not None:
        if request.method not in ("GET", "HEAD") and route not in site.public:
            form = await request.post()
            sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            check_post(request, sent if isinstance(sent, str) else None, session.csrf_token)
        request[SESSION] = session
        if request.method == "GET" and not _htmx(request):
            request[FLASH] = await site.sessions.take_flash(session.id)
    try:
        return await handler(request)
    except SignedOut:
        return _unauthenticated(request, site, ended=True)


def _unauthenticated(request: web.Request, site: Site, *, ended: bool) -> web.StreamResponse:
    """No session: the browser goes to the sign-in page (a page, or a form's action, which is
    not done); htmx's requests (a fragment, an action it sends) are refused, and htmx told
    where to go."""
    target = f"{site.prefix}/login" + ("?ended=1" if ended else "")
    if not _htmx(request):
        response = web.Response(status=303, headers={"Location": target})
    else:
        response = web.Response(status=401, text="sign in first\n")
        response.headers["HX-Redirect"] = target
    response.del_cookie(site.cookie, path=site.prefix)
    return response


def _htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def check_post(request: web.Request, sent: str | None, expected: str) -> None:
    """`security.check_post` of this request with the CSRF token `sent`; 403 if it fails."""
    site = request.app[SITE]
    try:
        security.check_post(
            expected_origin=site.origin.rstrip("/")
            or security.origin_of(https=is_https(request), host=request.host),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            sent_token=sent,
            session_token=expected,
        )
    except security.CrossSite as exc:
        log.warning("page request refused", path=request.path, reason=str(exc))
        raise web.HTTPForbidden(text=f"refused: {exc}\n") from None


# The status a page shows a failed call with, by the domain error's kind (the first that
# matches); any other: 502, the system behind the site failed.
STATUS_OF_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (InvalidArgument, 400),
    (NotFound, 404),
    (AlreadyExists, 409),
    (ResourceExhausted, 429),
    (Unavailable, 503),
)


def status_of(exc: DomainError) -> int:
    return next((status for kind, status in STATUS_OF_ERROR if isinstance(exc, kind)), 502)


async def shown(
    request: web.Request,
    read: Callable[[], Awaitable[Mapping[str, Any]]],
    page: Callable[[Mapping[str, Any]], web.StreamResponse],
) -> web.StreamResponse:
    """`page(context)` of what `read()` gives; a failure shown on the site's error page, with
    its status (a session that ended goes on to `signed_in`)."""
    try:
        context = await read()
    except SignedOut:
        raise
    except DomainError as exc:
        return request.app[SITE].error_page(request, str(exc), status_of(exc))
    return page(context)


def naming_the_browser(internal_token: str) -> dict[str, str]:
    """The headers a site's call of the API sends to be counted as the browser it is made for
    (the gateway takes the name only with the internal hops' secret); none outside a page's
    request."""
    browser = browser_address.get()
    return {CLIENT_HEADER: browser, INTERNAL_HEADER: internal_token} if browser else {}


def is_https(request: web.Request) -> bool:
    """Whether the browser reached the site over https (`security.is_https`)."""
    return security.is_https(request.headers.get("X-Forwarded-Proto"), secure=request.secure)


async def static(request: web.Request) -> web.StreamResponse:
    """A static file, at the URL its content's hash names (`STATIC_ROUTE`)."""
    assets = request.app[ASSETS]
    asset = assets.get(request.match_info["name"])
    if asset is None or asset.digest != request.match_info["digest"]:
        raise web.HTTPNotFound()
    response = web.Response(body=asset.body, headers={"Content-Type": asset.content_type})
    # The URL names the content: what it serves never changes.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
