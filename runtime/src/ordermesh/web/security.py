"""A site's rules against cross-site use and injection (the operator console's, the
storefront's), as pure functions; no I/O.

- every answer carries `HEADERS`: a content security policy that runs only the site's own
  scripts and styles (no inline ones, no eval), frames nowhere, posts forms only to itself;
  no MIME sniffing; no referrer; pages are never cached (`NO_STORE`);
- the session cookie (`cookie_attributes`) holds only the session's random id: HttpOnly,
  SameSite=Strict, Path=the site's prefix, and Secure when the browser reached the gateway over
  https;
- a request that changes anything is a POST that passes `check_post`: the CSRF token of its
  session (a form field or the X-CSRF-Token header htmx sends), and a browser's word that it
  comes from the site's own pages (Origin, Sec-Fetch-Site). A POST that says neither is
  refused: every browser the sites support sends one of them.

Origin is "null" on a same-origin POST from a page whose referrer policy is no-referrer (the
Fetch standard serialises the request's origin by that policy), and these sites' pages are:
"null" is therefore taken only with `Sec-Fetch-Site: same-origin`, which that policy does not
touch.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from ordermesh.errors import PermissionDenied

__all__ = [
    "CSP",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "HEADERS",
    "NO_STORE",
    "CrossSite",
    "check_post",
    "cookie_attributes",
    "is_https",
    "origin_of",
]

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ]
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_STORE = "no-store"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class CrossSite(PermissionDenied):
    """A state-changing request that cannot be shown to come from the site's own pages."""


def is_https(forwarded_proto: str | None, *, secure: bool) -> bool:
    """Whether the browser reached us over https: the gateway's X-Forwarded-Proto (its first
    value, the one the gateway set), or the connection itself."""
    if forwarded_proto:
        return forwarded_proto.split(",")[0].strip().lower() == "https"
    return secure


def origin_of(*, https: bool, host: str) -> str:
    """The site's origin as a browser names it, from the Host the browser sent."""
    return f"{'https' if https else 'http'}://{host.lower()}"


def check_post(
    *,
    expected_origin: str,
    origin: str | None,
    fetch_site: str | None,
    sent_token: str | None,
    session_token: str,
) -> None:
    """Refuses (CrossSite, naming why) a POST that is not from the site's pages."""
    if fetch_site is not None and fetch_site.lower() != "same-origin":
        raise CrossSite(f"Sec-Fetch-Site {fetch_site!r}: only the site's own pages may post")
    if origin is not None:
        if origin == "null":
            if fetch_site is None:
                raise CrossSite("Origin 'null' without Sec-Fetch-Site: cannot tell where from")
        elif origin.lower() != expected_origin.lower():
            raise CrossSite(f"Origin {origin!r} is not {expected_origin!r}")
    if origin is None and fetch_site is None:
        raise CrossSite("neither Origin nor Sec-Fetch-Site: cannot tell where the request is from")
    if (
        not sent_token
        or not session_token
        or not hmac.compare_digest(sent_token.encode(), session_token.encode())
    ):
        raise CrossSite("the form's CSRF token is missing or not this session's")


def cookie_attributes(*, path: str, secure: bool, max_age_s: int | None = None) -> dict[str, Any]:
    """The attributes of a site's cookies (aiohttp's `set_cookie` keywords), sent only to its
    `path`."""
    attributes: dict[str, Any] = {
        "httponly": True,
        "samesite": "Strict",
        "path": path,
        "secure": secure,
    }
    if max_age_s is not None:
        attributes["max_age"] = max_age_s
    return attributes
