"""The storefront's HTTP face: aiohttp handlers that turn a request into a use case's call
(services.storefront.shop) and its result into a page (Jinja2, autoescaped, strict) or an htmx
fragment, and `application()`, which routes to them and names each route.

The catalogue is open to anyone; registering and signing in are its public forms (their CSRF
token a cookie of their own: there is no session yet); everything else is a customer's, behind
the middlewares of ordermesh.web.site (the security headers; a session, required by route name).
GET never changes anything; each action is a POST of a form with its session's CSRF token.

An order's page follows it while its saga decides it: its fragment (`order_progress`) asks
again every STOREFRONT_REFRESH_S seconds until the order is decided, and those refreshes do not
extend the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from ordermesh.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    Unauthenticated,
)
from ordermesh.logging import get_logger
from ordermesh.web.assets import Asset
from ordermesh.web.security import CSRF_FIELD
from ordermesh.web.sessions import Session, SignedOut, new_token
from ordermesh.web.site import (
    ASSETS,
    FLASH,
    SESSION,
    SITE,
    STATIC_ROUTE,
    Site,
    check_post,
    guarded,
    shown,
    signed_in,
    static,
    status_of,
)

from services.storefront.shop import Storefront, chosen_items, delivery_address

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "PREFIX",
    "PROGRESS_ROUTE",
    "PUBLIC_ROUTES",
    "STATIC",
    "TEMPLATES",
    "application",
]

log = get_logger(__name__)

# Where the storefront is served, on its instance's HTTP port and at the gateway.
PREFIX = "/shop"
TEMPLATES = Path(__file__).parent / "templates"
# Its static files (htmx, copied from tools/node's pinned `htmx.org` by `python -m
# tools.web_assets`, part of `make gen`; its stylesheet).
STATIC = Path(__file__).parent / "static"
COOKIE = "storefront_session"
# The forms that sign a customer in (there is no session yet): their own CSRF token, for an hour.
LOGIN_COOKIE = "storefront_login"
LOGIN_TOKEN_S = 3600
# Served without a session: the bare root (a redirect), the catalogue, signing in, registering.
PUBLIC_ROUTES = frozenset({"root", "catalogue", "login", "register"})
# An order's page refreshing itself: not the customer's use of the storefront.
PROGRESS_ROUTE = "order_progress"

SHOP = web.AppKey("storefront", Storefront)
PAGES = web.AppKey("pages", jinja2.Environment)
REFRESH_S = web.AppKey("refresh_s", float)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def environment(assets: Mapping[str, Asset]) -> jinja2.Environment:
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    pages.globals.update(prefix=PREFIX, asset=assets)
    pages.filters.update(when=_when)
    return pages


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page: `template` with `context`, and what every page shows (the signed-in customer,
    the CSRF token its forms send, the last action's outcome)."""
    session: Session | None = request.get(SESSION)
    body = (
        request.app[PAGES]
        .get_template(template)
        .render(
            session=session,
            csrf=session.csrf_token if session else "",
            flash=request.get(FLASH, ""),
            **context,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def see(path: str) -> web.Response:
    """A redirect (303) to a page of the storefront, never elsewhere."""
    return web.Response(status=303, headers={"Location": f"{PREFIX}{path}"})


def _error_page(request: web.Request, error: str, status: int) -> web.Response:
    return render(request, "error.html", error=error, status=status)


async def _form(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


# The catalogue, and placing an order from it.


async def _root(_: web.Request) -> web.StreamResponse:
    return see("/")


async def _catalogue_page(
    request: web.Request,
    *,
    error: str = "",
    status: int = 200,
    form: Mapping[str, str] | None = None,
) -> web.Response:
    """The catalogue, with the order form a signed-in customer fills (`form`: what was sent,
    shown again with `error` when it was refused)."""
    try:
        products = await request.app[SHOP].catalogue()
    except DomainError as exc:
        return render(request, "error.html", error=str(exc), status=status_of(exc))
    return render(
        request,
        "catalogue.html",
        status=status,
        products=products,
        error=error,
        form=form or {},
        # A new key for each form shown: sending it twice places one order.
        order_key=uuid.uuid4().hex,
    )


async def catalogue(request: web.Request) -> web.StreamResponse:
    return await _catalogue_page(request)


async def place_order(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    try:
        order = await request.app[SHOP].place_order(
            request[SESSION],
            key=form.get("order_key", ""),
            items=chosen_items(form),
            address=delivery_address(form),
        )
    except SignedOut:
        raise
    except DomainError as exc:
        return await _catalogue_page(request, error=str(exc), status=status_of(exc), form=form)
    return see(f"/orders/{order.order_id}")


# Signing in, registering, signing out.


def _account_page(
    request: web.Request, template: str, *, error: str = "", status: int = 200, email: str = ""
) -> web.Response:
    token = new_token()
    response = render(request, template, status=status, login_token=token, error=error, email=email)
    response.set_cookie(
        LOGIN_COOKIE, token, **request.app[SITE].cookie_attributes(request, LOGIN_TOKEN_S)
    )
    return response


def _signed_in(request: web.Request, session: Session) -> web.StreamResponse:
    response = see("/")
    response.set_cookie(COOKIE, session.id, **request.app[SITE].cookie_attributes(request))
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is not None:
        return see("/")
    ended = "Your session has ended. Sign in again." if request.query.get("ended") else ""
    return _account_page(request, "login.html", error=ended)


async def _checked_account_form(request: web.Request) -> dict[str, str] | None:
    """The form, if it is this storefront's (its token is its cookie's); else None."""
    form = await _form(request)
    try:
        check_post(request, form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE, ""))
    except web.HTTPForbidden:
        return None
    return form


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await _checked_account_form(request)
    if form is None:
        error = "This form expired, or did not come from this shop: try again."
        return _account_page(request, "login.html", error=error, status=403)
    try:
        session = await request.app[SHOP].sign_in(form.get("email", ""), form.get("password", ""))
    except (Unauthenticated, InvalidArgument):
        error = "The e-mail or the password is wrong."
        return _account_page(request, "login.html", error=error, status=401)
    except DomainError as exc:
        return _account_page(
            request, "login.html", error=f"Cannot sign in now: {exc}", status=status_of(exc)
        )
    return _signed_in(request, session)


async def register_form(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is not None:
        return see("/")
    return _account_page(request, "register.html")


async def register(request: web.Request) -> web.StreamResponse:
    form = await _checked_account_form(request)
    if form is None:
        error = "This form expired, or did not come from this shop: try again."
        return _account_page(request, "register.html", error=error, status=403)
    email = form.get("email", "")
    try:
        session = await request.app[SHOP].register(
            email, form.get("password", ""), form.get("name", "")
        )
    except AlreadyExists:
        error = "An account with this e-mail exists already: sign in instead."
        return _account_page(request, "register.html", error=error, status=409, email=email)
    except DomainError as exc:
        return _account_page(
            request, "register.html", error=str(exc), status=status_of(exc), email=email
        )
    return _signed_in(request, session)


async def sign_out(request: web.Request) -> web.StreamResponse:
    await request.app[SHOP].sign_out(request[SESSION])
    response = see("/")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


# The customer's orders and notifications.


async def _shown(
    request: web.Request, template: str, read: Callable[[], Awaitable[Mapping[str, Any]]]
) -> web.StreamResponse:
    return await shown(request, read, lambda context: render(request, template, **context))


async def orders(request: web.Request) -> web.StreamResponse:
    async def read() -> dict[str, Any]:
        return {"orders": await request.app[SHOP].orders(request[SESSION])}

    return await _shown(request, "orders.html", read)


async def _order_context(request: web.Request) -> dict[str, Any]:
    page = await request.app[SHOP].order(request[SESSION], request.match_info["order_id"])
    return {"page": page, "refresh_s": request.app[REFRESH_S]}


async def order(request: web.Request) -> web.StreamResponse:
    return await _shown(request, "order.html", lambda: _order_context(request))


async def order_progress(request: web.Request) -> web.StreamResponse:
    """The order's state, steps and notifications, for its page to swap in."""
    try:
        context = await _order_context(request)
    except SignedOut:
        raise
    except DomainError as exc:
        # Said in the page, and asked again at the next refresh.
        return render(
            request,
            "_progress_failed.html",
            error=str(exc),
            order_id=request.match_info["order_id"],
            refresh_s=request.app[REFRESH_S],
        )
    return render(request, "_progress.html", **context)


async def cancel(request: web.Request) -> web.StreamResponse:
    order_id = request.match_info["order_id"]
    form = await _form(request)
    shop = request.app[SHOP]
    session = request[SESSION]
    try:
        await shop.cancel(session, order_id, form.get("reason", ""))
        outcome = "Your order is cancelled."
    except SignedOut:
        raise
    except DomainError as exc:
        outcome = f"Not cancelled: {exc}"
    await shop.sessions.flash(session.id, outcome)
    return see(f"/orders/{order_id}")


async def notifications(request: web.Request) -> web.StreamResponse:
    async def read() -> dict[str, Any]:
        return {"notifications": await request.app[SHOP].notifications(request[SESSION])}

    return await _shown(request, "notifications.html", read)


def application(
    shop: Storefront, *, assets: Mapping[str, Asset], origin: str = "", refresh_s: float = 1.0
) -> web.Application:
    """The storefront, to be mounted at PREFIX (`ordermesh.grpc.serve(apps={PREFIX: ...})`).

    Every route is named: the middlewares tell routes apart by name (PUBLIC_ROUTES,
    PROGRESS_ROUTE)."""
    app = web.Application(middlewares=[guarded, signed_in])
    app[SITE] = Site(
        prefix=PREFIX,
        cookie=COOKIE,
        sessions=shop.sessions,
        error_page=_error_page,
        public=PUBLIC_ROUTES,
        passive=frozenset({PROGRESS_ROUTE}),
        origin=origin,
    )
    app[SHOP] = shop
    app[ASSETS] = dict(assets)
    app[PAGES] = environment(assets)
    app[REFRESH_S] = refresh_s
    router = app.router
    router.add_get("", _root, name="root")
    router.add_get("/", catalogue, name="catalogue")
    # One path, two methods: one route name (aiohttp names the path's resource).
    router.add_get("/login", login_form, name="login")
    router.add_post("/login", sign_in, name="login")
    router.add_get("/register", register_form, name="register")
    router.add_post("/register", register, name="register")
    router.add_post("/logout", sign_out, name="sign_out")
    router.add_get("/orders", orders, name="orders")
    router.add_post("/orders", place_order, name="orders")
    router.add_get("/orders/{order_id}", order, name="order")
    router.add_get("/orders/{order_id}/progress", order_progress, name=PROGRESS_ROUTE)
    router.add_post("/orders/{order_id}/cancel", cancel, name="cancel")
    router.add_get("/notifications", notifications, name="notifications")
    router.add_get("/static/{digest}/{name}", static, name=STATIC_ROUTE)
    return app
