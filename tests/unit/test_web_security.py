"""A site's rules against cross-site use (the console's, the storefront's): a POST counts only
with its session's CSRF token and a browser's word that it comes from the site's own pages;
cookies hold only an id and never leave the site's path; every answer carries the content
security policy."""

import pytest
from ordermesh.web.security import (
    CSP,
    HEADERS,
    CrossSite,
    check_post,
    cookie_attributes,
    is_https,
    origin_of,
)
from ordermesh.web.sessions import Session, new_token

ORIGIN = "https://127.0.0.1:8080"
TOKEN = "t" * 43


def post(**given):
    check_post(
        **{
            "expected_origin": ORIGIN,
            "origin": ORIGIN,
            "fetch_site": "same-origin",
            "sent_token": TOKEN,
            "session_token": TOKEN,
            **given,
        }
    )


def test_a_post_from_the_sites_own_page_with_its_token_passes():
    post()
    post(origin=None)  # a browser that sends Sec-Fetch-Site alone
    post(fetch_site=None)  # one that sends Origin alone
    post(origin="HTTPS://127.0.0.1:8080")  # an origin's scheme and host are case-blind


@pytest.mark.parametrize("token", [None, "", "u" * 43, TOKEN[:-1]])
def test_a_post_without_its_sessions_csrf_token_is_refused(token):
    with pytest.raises(CrossSite, match="CSRF token"):
        post(sent_token=token)


def test_a_session_without_a_token_matches_nothing():
    with pytest.raises(CrossSite, match="CSRF token"):
        post(sent_token="", session_token="")


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://127.0.0.1:8080", "https://127.0.0.1:8081"]
)
def test_a_post_from_another_origin_is_refused_even_with_the_token(origin):
    with pytest.raises(CrossSite, match="Origin"):
        post(origin=origin, fetch_site=None)


@pytest.mark.parametrize("site", ["cross-site", "same-site", "none"])
def test_a_post_the_browser_says_is_not_same_origin_is_refused(site):
    with pytest.raises(CrossSite, match="Sec-Fetch-Site"):
        post(fetch_site=site)


def test_origin_null_counts_only_with_sec_fetch_site_same_origin():
    # Pages served with Referrer-Policy: no-referrer post with Origin: null (Fetch standard).
    post(origin="null", fetch_site="same-origin")
    with pytest.raises(CrossSite, match="null"):
        post(origin="null", fetch_site=None)


def test_a_post_that_says_nothing_of_where_it_comes_from_is_refused():
    with pytest.raises(CrossSite, match="neither Origin nor Sec-Fetch-Site"):
        post(origin=None, fetch_site=None)


def test_the_content_security_policy_allows_only_the_sites_own_files():
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))

    assert directives == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
        "base-uri": "'none'",
    }
    assert "unsafe" not in CSP


def test_every_answer_carries_the_policy_nosniff_and_no_referrer():
    assert HEADERS["Content-Security-Policy"] == CSP
    assert HEADERS["X-Content-Type-Options"] == "nosniff"
    assert HEADERS["Referrer-Policy"] == "no-referrer"


def test_the_cookie_is_http_only_strict_and_of_the_sites_path():
    assert cookie_attributes(path="/console", secure=False) == {
        "httponly": True,
        "samesite": "Strict",
        "path": "/console",
        "secure": False,
    }
    assert cookie_attributes(path="/shop", secure=True, max_age_s=600)["secure"] is True
    assert cookie_attributes(path="/shop", secure=True, max_age_s=600)["max_age"] == 600


def test_https_is_what_the_gateway_says_it_saw_else_the_connection():
    assert is_https("https", secure=False)
    assert is_https("HTTPS, http", secure=False)  # the first value is the gateway's
    assert not is_https("http", secure=True)
    assert is_https(None, secure=True)
    assert not is_https(None, secure=False)
    assert origin_of(https=True, host="Console.Example:8080") == "https://console.example:8080"


def test_a_session_is_kept_sealed_with_a_key_only_its_id_gives():
    session = Session(
        id=new_token(), user_id="u-1", email="admin@example.com", name="Admin",
        roles=("admin",), access_token="eyJ.access.token", access_expires_at=0.0,
        refresh_token="refresh-secret", refresh_expires_at=0.0, csrf_token=new_token(),
        created_at=0.0,
    )  # fmt: skip
    kept = session.sealed()

    assert "eyJ.access.token" not in kept
    assert "refresh-secret" not in kept
    assert Session.unsealed(session.id, kept) == session
    with pytest.raises(ValueError, match="not sealed with this id's key"):
        Session.unsealed(new_token(), kept)
