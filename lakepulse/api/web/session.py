"""Sign-in sessions for the dashboard: the JWT of the metrics API in an HttpOnly cookie, and who a request is.

A browser cannot put an Authorization header on a page navigation or an `EventSource`, so the pages carry the
same bearer JWT in the `lakepulse_session` cookie (HttpOnly: page scripts never see it; SameSite=Strict: other
sites' pages cannot make the browser send it; Secure over https). The header still wins when both are present.
A cookie is sent by the browser whoever wrote the request, so a request that changes something (any method but
GET, HEAD and OPTIONS) signed in by the cookie alone must also prove it comes from our own pages: its `Origin`
names the host it was sent to (cross-site request forgery; SameSite=Strict already stops most of it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from lakepulse.auth.tokens import Forbidden, Principal, TokenVerifier

SESSION_COOKIE: Final = "lakepulse_session"
# A working day; signing in again after it is cheap, and a stolen cookie is worth less.
SESSION_TTL: Final = timedelta(hours=12)
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def is_same_origin(request: Request) -> bool:
    """Whether a request was sent by a page of this site: its Origin header names the host the request went to
    (and Sec-Fetch-Site, where the browser sends it, says same-origin)."""
    origin, host = request.headers.get("origin"), request.headers.get("host")
    if not origin or not host:
        return False
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and parsed.netloc.lower() == host.strip().lower()


def session_token(request: Request) -> str | None:
    """The JWT of the request's session cookie, if it has one."""
    return request.cookies.get(SESSION_COOKIE) or None


def authenticate(request: Request, verifier: TokenVerifier) -> Principal:
    """Who sent `request`: the Authorization bearer token or, without that header, the session cookie (a request
    that changes something must then come from our own pages: Forbidden otherwise). AuthError when neither
    verifies."""
    authorization = request.headers.get("authorization")
    cookie = session_token(request)
    if authorization is not None or cookie is None:
        return verifier.authenticate(authorization)
    if request.method not in SAFE_METHODS and not is_same_origin(request):
        raise Forbidden("a request signed in by the session cookie must come from this site's pages (Origin header)")
    return verifier.verify(cookie)


def set_session(response: Response, request: Request, token: str, ttl: timedelta = SESSION_TTL) -> None:
    """Put `token` in the session cookie of `response`: HttpOnly, SameSite=Strict, Secure when served over https."""
    response.set_cookie(SESSION_COOKIE, token, max_age=int(ttl.total_seconds()), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def clear_session(response: Response, request: Request) -> None:
    """Make the browser forget the session cookie (the JWT itself stays valid until it expires)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
