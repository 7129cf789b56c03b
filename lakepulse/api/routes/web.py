"""The dashboard, served by the metrics API (same origin, no CDN): sign-in, the pages, their static files.

- `GET /`: sign-in. Locally a form (`POST /session`) mints the API's JWT for a restaurant (or an analyst/admin)
  and keeps it in the HttpOnly `lakepulse_session` cookie; in cluster mode tokens come from the identity
  provider (an auth proxy in front of the API sends `Authorization: Bearer ...` on every request) and the form
  is refused.
- `GET /app/restaurant[?tenant=T]`: one restaurant's page (a restaurant token reads its own; naming another
  is 403); `GET /app/operations`: analyst and admin only.
- `/static/...`: `web/static` (our ES modules and CSS) and `/static/vendor/...`: `web/vendor` (uPlot).

Pages are not API: they are left out of the OpenAPI document, and hold no data (their scripts read `/v1/...`).
"""

from __future__ import annotations

import os
from os import PathLike
from typing import Annotated, Final
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from lakepulse.api.deps import ANONYMOUS, SettingsDep, VerifierDep
from lakepulse.api.web import session
from lakepulse.api.web.pages import (
    PAGE_HEADERS,
    STATIC_DIR,
    VENDOR_DIR,
    Html,
    checked_currency,
    checked_timezone,
    page,
    render,
)
from lakepulse.auth.tokens import AccessError, AuthError, Principal, TenantRequestError, mint_token

router = APIRouter(include_in_schema=False, tags=["pages"])

MAX_FORM_BYTES: Final = 4096
SIGN_IN_ROLES: Final = ("tenant", "analyst", "admin")
CLUSTER_SIGN_IN: Final = ("In cluster mode tokens come from the identity provider: sign in through it (the auth "
                          "proxy in front of lakepulse), not with this form.")


class FormError(Exception):
    """A form the server will not read: `status_code` and a sentence for the person who sent it."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class Assets(StaticFiles):
    """Static files that browsers revalidate (ETag) on every load: file names carry no version."""

    def file_response(self, full_path: PathLike[str] | str, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    """Add the pages and their static files to `app` (the vendor mount first: /static would match it too)."""
    app.include_router(router)
    app.mount("/static/vendor", Assets(directory=VENDOR_DIR, check_dir=False), name="vendor")
    # check_dir off: an API installed without the repository's web/ directory still starts (its pages then fail).
    app.mount("/static", Assets(directory=STATIC_DIR, check_dir=False), name="static")


def html_page(content: Html, status: int = 200) -> HTMLResponse:
    """An HTML response with the pages' security headers."""
    return HTMLResponse(content, status_code=status, headers=PAGE_HEADERS)


def page_principal(request: Request, settings: SettingsDep, verifier: VerifierDep) -> Principal | None:
    """Who opened a page (bearer header or session cookie); None when nobody verifiable is signed in."""
    if not settings.auth_enabled:
        return ANONYMOUS
    try:
        return session.authenticate(request, verifier)
    except AuthError:
        return None


def nav(principal: Principal | None) -> Html:
    """The header's links and sign-out button for `principal` (nothing when signed out)."""
    if principal is None:
        return Html("")
    who = f"restaurant {principal.tenant_id}" if principal.tenant_id is not None else principal.role
    return render("nav", who=who,
                  operations=render("nav-operations") if principal.reads_all_tenants else Html(""))


def error_page(status: int, title: str, message: str, principal: Principal | None) -> HTMLResponse:
    """A page that says why the request was refused."""
    return html_page(page(title, render("error", title=title, message=message), nav(principal)), status)


def restaurant_url(tenant: str | None, timezone: str, currency: str) -> str:
    """The restaurant page's address with the display choices that are set."""
    params = {key: value for key, value in (("tenant", tenant), ("tz", timezone), ("currency", currency)) if value}
    return "/app/restaurant" + (f"?{urlencode(params)}" if params else "")


async def small_form(request: Request) -> dict[str, str]:
    """The first value of each field of a small urlencoded form; FormError for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "the form could not be read") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value.strip())
    return fields


def sign_in_page(settings: SettingsDep, principal: Principal | None, message: str = "",
                 status: int = 200) -> HTMLResponse:
    """The sign-in page: the form (local mode) or how to sign in through the identity provider (cluster)."""
    if principal is not None:
        home = "/app/operations" if principal.reads_all_tenants else "/app/restaurant"
        signed_in = render("signed-in", who=nav_who(principal), home=home)
    else:
        signed_in = Html("")
    if settings.mode == "local":
        content = render("signin-local", signed_in=signed_in,
                         message=render("form-error", message=message) if message else Html(""))
    else:
        content = render("signin-cluster", signed_in=signed_in)
    return html_page(page("Sign in", content, nav(principal)), status)


def nav_who(principal: Principal) -> str:
    """Who is signed in, in words."""
    return f"restaurant {principal.tenant_id}" if principal.tenant_id is not None else f"an {principal.role}"


@router.get("/")
def sign_in(request: Request, settings: SettingsDep, verifier: VerifierDep) -> HTMLResponse:
    """The sign-in page (and who is signed in already)."""
    return sign_in_page(settings, page_principal(request, settings, verifier))


@router.post("/session")
async def create_session(request: Request, settings: SettingsDep) -> Response:
    """Local mode: mint the API's JWT for the form's tenant (or analyst/admin role) into the session cookie,
    then go to the page it reads. Cluster mode refuses (the identity provider issues tokens)."""
    if settings.mode != "local":
        return error_page(403, "Sign in through the identity provider", CLUSTER_SIGN_IN, None)
    if not session.is_same_origin(request):  # login CSRF: another site must not sign this browser in
        return error_page(403, "Sign-in refused", "the form must be sent from this site's sign-in page", None)
    try:
        form = await small_form(request)
    except FormError as exc:
        return error_page(exc.status_code, "Sign-in refused", str(exc), None)
    role = form.get("role") or "tenant"
    tenant = form.get("tenant") or None
    if role not in SIGN_IN_ROLES:
        return sign_in_page(settings, None, "choose restaurant, analyst or admin", 400)
    timezone, currency = checked_timezone(form.get("timezone")), checked_currency(form.get("currency"))
    try:
        token = mint_token(settings, tenant=tenant if role == "tenant" else None, role=role,
                           ttl=session.SESSION_TTL, subject=f"web-{tenant}" if role == "tenant" else f"web-{role}")
    except ValueError as exc:  # our own wording: a missing or malformed tenant id
        return sign_in_page(settings, None, str(exc), 400)
    # An analyst or admin naming a restaurant opens its page (the token itself names none).
    target = restaurant_url(tenant, timezone, currency) if tenant else "/app/operations"
    response = RedirectResponse(target, status_code=303)
    session.set_session(response, request, token)
    return response


@router.post("/session/logout")
def end_session(request: Request) -> Response:
    """Forget the session cookie and go back to sign-in."""
    if not session.is_same_origin(request):
        return error_page(403, "Sign-out refused", "the form must be sent from this site's pages", None)
    response = RedirectResponse("/", status_code=303)
    session.clear_session(response, request)
    return response


@router.get("/app/restaurant")
def restaurant_page(
    request: Request,
    settings: SettingsDep,
    verifier: VerifierDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    tz: Annotated[str | None, Query(max_length=64)] = None,
    currency: Annotated[str | None, Query(max_length=3)] = None,
) -> Response:
    """One restaurant's page: its own for a restaurant's session (another's is 403); an analyst or admin names
    one (or picks it here)."""
    principal = page_principal(request, settings, verifier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    try:
        tenant_id = principal.tenant_for(tenant)
    except TenantRequestError as exc:
        if tenant is None:  # an analyst or admin who has not named a restaurant yet
            return html_page(page("Choose a restaurant", render("pick-tenant"), nav(principal)))
        return error_page(400, "No such restaurant", str(exc), principal)
    except AccessError as exc:
        return error_page(exc.status_code, "Not your restaurant", str(exc), principal)
    content = render("restaurant", tenant=tenant_id, role=principal.role, timezone=checked_timezone(tz),
                     currency=checked_currency(currency))
    return html_page(page(f"Restaurant {tenant_id}", content, nav(principal)))


@router.get("/app/operations")
def operations_page(request: Request, settings: SettingsDep, verifier: VerifierDep) -> Response:
    """The operations page, for analysts and admins."""
    principal = page_principal(request, settings, verifier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if not principal.reads_all_tenants:
        return error_page(403, "Operations", "the operations page is for the analyst and admin roles", principal)
    content = render("operations", role=principal.role, api_docs="/docs", metrics="/metrics",
                     airflow=settings.airflow_url, trino=settings.trino_url, pinot=settings.pinot_controller_url)
    return html_page(page("Operations", content, nav(principal)))
