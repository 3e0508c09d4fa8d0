"""The console's HTTP face: aiohttp handlers that turn a request into a use case's call and its
result into a page (Jinja2, autoescaped) or an htmx fragment.

Every answer passes two middlewares, in this order:
- `_guarded`: the security headers of services.console.security on every answer, errors and
  static files included, and `Cache-Control: no-store` on all but the static files;
- `_signed_in`: nothing but the sign-in page and the static files without a session (pages
  redirect to the sign-in page, fragments and actions answer 401, with `HX-Redirect` for
  htmx); every POST checked by `security.check_post` (403 when it fails), the sign-in form's
  against a token of its own cookie.

GET never changes anything; each action is a POST of a form (its CSRF token a hidden field, or
htmx's X-CSRF-Token header), answered by a redirect to the page it came from with its outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from chassis.errors import DomainError, InvalidArgument, NotFound, Unauthenticated
from chassis.logging import get_logger
from services.console import security
from services.console.assets import Asset
from services.console.security import CSRF_FIELD, CSRF_HEADER, PREFIX
from services.console.service import Console, NotAnAdmin, SignedOut
from services.console.sessions import Session, new_token

__all__ = ["COOKIE", "LOGIN_COOKIE", "TEMPLATES", "application"]

log = get_logger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
COOKIE = "console_session"
# The sign-in form's own CSRF token (there is no session yet), for 10 minutes.
LOGIN_COOKIE = "console_login"
LOGIN_TOKEN_S = 600
SAGA_STATUSES = ("NEEDS_OPERATOR", "COMPENSATING", "RUNNING", "COMPLETED", "COMPENSATED")

CONSOLE = web.AppKey("console", Console)
PAGES = web.AppKey("pages", jinja2.Environment)
ASSETS = web.AppKey("assets", dict[str, Asset])
SESSION = web.RequestKey("session", Session)
FLASH = web.RequestKey("flash", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Formatting for the templates.


def _when(value: datetime | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _figure(value: float | None, shown: str = "{:.1f}") -> str:
    return "-" if value is None else shown.format(value)


def _environment(assets: Mapping[str, Asset]) -> jinja2.Environment:
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


def _page(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
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


def _see(path: str, **query: str) -> web.Response:
    """A redirect (303) to a page of the console, never elsewhere."""
    target = f"{PREFIX}{path}"
    if query:
        target += "?" + urlencode({k: v for k, v in query.items() if v})
    return web.Response(status=303, headers={"Location": target})


def _https(request: web.Request) -> bool:
    return security.is_https(request.headers.get("X-Forwarded-Proto"), secure=request.secure)


def _expected_origin(request: web.Request) -> str:
    console = request.app[CONSOLE]
    return console.settings.console_origin.rstrip("/") or security.origin_of(
        https=_https(request), host=request.host
    )


def _htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _unauthenticated(request: web.Request) -> web.StreamResponse:
    """No session: a page goes to the sign-in page; a fragment or an action is refused."""
    if request.method == "GET" and not _htmx(request):
        response: web.StreamResponse = _see("/login")
    else:
        response = web.Response(status=401, text="sign in first\n")
        response.headers["HX-Redirect"] = f"{PREFIX}/login"
    response.del_cookie(COOKIE, path=PREFIX)
    return response


# The middlewares.


@web.middleware
async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    except Exception:  # a bug, or a dependency failing in a way not foreseen: logged, and
        # answered like any other page, with the security headers
        log.exception("console request failed", path=request.path)
        response = _page(request, "error.html", error="Something went wrong.", status=500)
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(security.HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/") or response.status != 200:
        response.headers["Cache-Control"] = security.NO_STORE


@web.middleware
async def _signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.handler in _PUBLIC:
        return await handler(request)
    console = request.app[CONSOLE]
    # The live page's own refreshes do not count as use: a tab left open signs out when idle.
    refresh = request.match_info.handler is live_fragment
    session = await console.sessions.get(request.cookies.get(COOKIE), extend=not refresh)
    if session is None:
        return _unauthenticated(request)
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        _checked(request, sent if isinstance(sent, str) else None, session.csrf_token)
    request[SESSION] = session
    if request.method == "GET" and not _htmx(request):
        request[FLASH] = await console.sessions.take_flash(session.id)
    try:
        return await handler(request)
    except SignedOut:
        return _unauthenticated(request)


def _checked(request: web.Request, sent: str | None, expected: str) -> None:
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


# Signing in and out.


async def _root(_: web.Request) -> web.StreamResponse:
    return _see("/")


def _login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = new_token()
    response = _page(request, "login.html", status=status, login_token=token, error=error)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        **security.cookie_attributes(secure=_https(request), max_age_s=LOGIN_TOKEN_S),
    )
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if await request.app[CONSOLE].sessions.get(request.cookies.get(COOKIE)) is not None:
        return _see("/")
    return _login_page(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    try:
        _checked(
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
    response = _see("/")
    response.set_cookie(COOKIE, session.id, **security.cookie_attributes(secure=_https(request)))
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    await request.app[CONSOLE].sign_out(request[SESSION])
    response = _see("/login")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


# The live system.


async def live(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    return _page(
        request,
        "live.html",
        live=await console.live(),
        refresh_s=console.settings.console_refresh_s,
    )


async def live_fragment(request: web.Request) -> web.StreamResponse:
    return _page(request, "_live.html", live=await request.app[CONSOLE].live())


# One request's story.


async def story(request: web.Request) -> web.StreamResponse:
    key = request.query.get("id", "").strip()
    if not key:
        return _page(request, "story.html", key="", story=None, error="")
    try:
        found = await request.app[CONSOLE].story(request[SESSION], key)
    except SignedOut:
        raise
    except DomainError as exc:
        return _page(request, "story.html", key=key, story=None, error=str(exc), status=400)
    return _page(request, "story.html", key=key, story=found, error="")


# Dead letters and parked messages.


def _service(request: web.Request, services: tuple[str, ...]) -> str:
    service = request.match_info.get("service") or request.query.get("service") or ""
    if not service and services:
        return services[0]
    if service not in services:
        raise web.HTTPNotFound(text=f"no such service: {service[:64]!r}\n")
    return service


async def _shown(
    request: web.Request, template: str, read: Callable[[], Awaitable[Mapping[str, Any]]]
) -> web.StreamResponse:
    """A page of what `read()` gives; a failure shown on the page, with its status."""
    try:
        context = await read()
    except SignedOut:
        raise
    except NotFound as exc:
        return _page(request, "error.html", error=str(exc), status=404)
    except InvalidArgument as exc:
        return _page(request, "error.html", error=str(exc), status=400)
    except DomainError as exc:
        return _page(request, "error.html", error=str(exc), status=502)
    return _page(request, template, **context)


async def messages(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)

    async def read() -> Mapping[str, Any]:
        return {"page": await console.messages(request[SESSION], service)}

    return await _shown(request, "messages.html", read)


async def dead_letter(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    queue, event_id = request.query.get("queue", ""), request.match_info["event_id"]

    async def read() -> Mapping[str, Any]:
        letter = await console.dead_letter(
            request[SESSION], service, queue=queue, event_id=event_id
        )
        return {"service": service, "letter": letter}

    return await _shown(request, "dead_letter.html", read)


async def parked_message(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    event_id = request.match_info["event_id"]

    async def read() -> Mapping[str, Any]:
        message = await console.parked_message(request[SESSION], service, event_id)
        return {"service": service, "message": message}

    return await _shown(request, "parked.html", read)


async def _act(
    request: web.Request, back: web.Response, act: Callable[[], Awaitable[str]]
) -> web.StreamResponse:
    """Runs an action and goes back to `back`, with its outcome (or why it failed) shown."""
    console = request.app[CONSOLE]
    session = request[SESSION]
    try:
        outcome = await act()
    except SignedOut:
        raise
    except DomainError as exc:
        outcome = f"Not done: {exc}"
    await console.sessions.flash(session.id, outcome)
    return back


def _chosen(values: list[str]) -> list[tuple[str, str]]:
    """The (queue, event id) of each dead letter chosen in a form ("queue|event id")."""
    return [(q, e) for q, _, e in (v.partition("|") for v in values)]


async def replay(request: web.Request) -> web.StreamResponse:
    return await _on_dead_letters(request, "replay")


async def discard(request: web.Request) -> web.StreamResponse:
    return await _on_dead_letters(request, "discard")


async def _on_dead_letters(request: web.Request, action: str) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    form = await request.post()
    chosen = _chosen([str(v) for v in form.getall("chosen", [])])
    reason = str(form.get("reason", ""))

    async def act() -> str:
        if action == "replay":
            done = await console.replay(request[SESSION], service, chosen, reason)
            return f"Replayed {done} of {len(chosen)} dead letter(s) of {service}."
        done = await console.discard(request[SESSION], service, chosen, reason)
        return f"Discarded {done} of {len(chosen)} dead letter(s) of {service}."

    return await _act(request, _see("/messages", service=service), act)


async def unpark(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.operator_services)
    form = await request.post()
    event_ids = [str(v) for v in form.getall("event_id", [])]
    reason = str(form.get("reason", ""))

    async def act() -> str:
        done = await console.unpark(request[SESSION], service, event_ids, reason)
        return f"Unparked {done} of {len(event_ids)} message(s) of {service}."

    return await _act(request, _see("/messages", service=service), act)


# Sagas.


async def sagas(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    status = request.query.get("status", "NEEDS_OPERATOR")
    if status not in ("", *SAGA_STATUSES):
        raise web.HTTPBadRequest(text=f"no saga status {status[:32]!r}\n")
    min_age = request.query.get("min_age", "") or "0"
    if not min_age.isdigit() or len(min_age) > 9:
        raise web.HTTPBadRequest(text="min_age is a whole number of seconds\n")
    page_token = request.query.get("page", "")

    async def read() -> Mapping[str, Any]:
        found, next_page = await console.sagas(
            request[SESSION],
            service,
            status=status,
            min_age_s=int(min_age),
            page_token=page_token,
        )
        return {
            "service": service,
            # Not `status`: _page takes that as the answer's HTTP status.
            "chosen_status": status,
            "min_age": min_age,
            "sagas": found,
            "next_page": next_page,
        }

    return await _shown(request, "sagas.html", read)


async def saga(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    saga_id = request.match_info["saga_id"]

    async def read() -> Mapping[str, Any]:
        found, history = await console.saga(request[SESSION], service, saga_id)
        return {"service": service, "saga": found, "history": history}

    return await _shown(request, "saga.html", read)


async def retry_compensation(request: web.Request) -> web.StreamResponse:
    return await _on_saga(request, "retry")


async def resolve_saga(request: web.Request) -> web.StreamResponse:
    return await _on_saga(request, "resolve")


async def _on_saga(request: web.Request, action: str) -> web.StreamResponse:
    console = request.app[CONSOLE]
    service = _service(request, console.settings.saga_services)
    saga_id = request.match_info["saga_id"]
    reason = str((await request.post()).get("reason", ""))

    async def act() -> str:
        if action == "retry":
            done = await console.retry_compensation(request[SESSION], service, saga_id, reason)
            return f"Compensation sent again: saga {saga_id} is {done.status}."
        done = await console.resolve_saga(request[SESSION], service, saga_id, reason)
        return f"Saga {saga_id} resolved: it is {done.status}."

    return await _act(request, _see(f"/sagas/{service}/{saga_id}"), act)


# The static files.


async def static(request: web.Request) -> web.StreamResponse:
    asset = request.app[ASSETS].get(request.match_info["name"])
    if asset is None or asset.digest != request.match_info["digest"]:
        raise web.HTTPNotFound()
    response = web.Response(body=asset.body, headers={"Content-Type": asset.content_type})
    # The URL names the content: what it serves never changes.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


# What is served without a session, by handler (never by path: a path can be spelt many ways).
_PUBLIC = frozenset({_root, login_form, sign_in, static})


def application(console: Console, *, assets: Mapping[str, Asset]) -> web.Application:
    """The console, to be mounted at PREFIX (`chassis.grpc.serve(apps={PREFIX: ...})`)."""
    app = web.Application(middlewares=[_guarded, _signed_in])
    app[CONSOLE] = console
    app[ASSETS] = dict(assets)
    app[PAGES] = _environment(assets)
    app.router.add_get("", _root)
    app.router.add_get("/", live)
    app.router.add_get("/fragments/live", live_fragment)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", sign_in)
    app.router.add_post("/logout", sign_out)
    app.router.add_get("/story", story)
    app.router.add_get("/messages", messages)
    app.router.add_get("/messages/{service}/dead-letters/{event_id}", dead_letter)
    app.router.add_get("/messages/{service}/parked/{event_id}", parked_message)
    app.router.add_post("/messages/{service}/dead-letters/replay", replay)
    app.router.add_post("/messages/{service}/dead-letters/discard", discard)
    app.router.add_post("/messages/{service}/parked/unpark", unpark)
    app.router.add_get("/sagas", sagas)
    app.router.add_get("/sagas/{service}/{saga_id}", saga)
    app.router.add_post("/sagas/{service}/{saga_id}/retry", retry_compensation)
    app.router.add_post("/sagas/{service}/{saga_id}/resolve", resolve_saga)
    app.router.add_get("/static/{digest}/{name}", static)
    return app
