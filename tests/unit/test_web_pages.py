"""The dashboard's pages and sessions, without engines: sign-in, the session cookie, who may open which page,
the cookie on the API (reads, and the same-origin rule for anything else), static files, and the front end's
pure JavaScript (node --test)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request

from lakepulse.api.app import create_app
from lakepulse.api.web import session
from lakepulse.api.web.pages import STATIC_DIR, TEMPLATES_DIR, WEB_DIR
from lakepulse.auth.tokens import AuthError, Forbidden, TokenVerifier, mint_token
from lakepulse.settings import Settings
from tests.unit.cluster_settings import CLUSTER_KWARGS

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ORIGIN = "http://testserver"
SAME_ORIGIN = {"Origin": ORIGIN}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), auth_jwt_issuer="lakepulse-local",
                    auth_jwt_audience="lakepulse")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # Engine readers connect lazily: nothing here reads metrics, so none is ever touched.
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, headers: dict[str, str] | None = None, **fields: str) -> Any:
    return client.post("/session", data=fields, headers={**SAME_ORIGIN, **(headers or {})})


def set_cookie(response: Any) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


def cookie_of(settings: Settings, **claims: Any) -> dict[str, str]:
    return {session.SESSION_COOKIE: mint_token(settings, **claims)}


# --- sign-in --------------------------------------------------------------------------------------------------


def test_the_sign_in_page_has_the_form_locally_and_strict_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/session"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_signing_in_sets_an_httponly_strict_cookie_with_the_tenants_token(client: TestClient,
                                                                           settings: Settings) -> None:
    response = sign_in(client, role="tenant", tenant="t-a", timezone="Europe/Berlin", currency="EUR")
    assert response.status_code == 303
    assert response.headers["location"] == "/app/restaurant?tenant=t-a&tz=Europe%2FBerlin&currency=EUR"
    morsel = set_cookie(response)[session.SESSION_COOKIE]
    assert morsel["httponly"] is True and morsel["samesite"].lower() == "strict" and morsel["path"] == "/"
    assert not morsel["secure"]  # plain http (local): a Secure cookie would never come back
    assert int(morsel["max-age"]) == int(session.SESSION_TTL.total_seconds())
    principal = TokenVerifier(settings).verify(morsel.value)
    assert (principal.role, principal.tenant_id) == ("tenant", "t-a")


def test_over_https_the_cookie_is_secure(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        response = client.post("/session", data={"tenant": "t-a"}, headers={"Origin": "https://testserver"})
    assert response.status_code == 303
    assert set_cookie(response)[session.SESSION_COOKIE]["secure"] is True


@pytest.mark.parametrize(("fields", "target", "role"), [
    ({"role": "analyst"}, "/app/operations", "analyst"),
    ({"role": "admin", "tenant": "t-b"}, "/app/restaurant?tenant=t-b", "admin"),
])
def test_analysts_and_admins_sign_in_without_a_tenant_claim(client: TestClient, settings: Settings,
                                                            fields: dict[str, str], target: str, role: str) -> None:
    response = sign_in(client, None, **fields)
    assert (response.status_code, response.headers["location"]) == (303, target)
    principal = TokenVerifier(settings).verify(set_cookie(response)[session.SESSION_COOKIE].value)
    assert (principal.role, principal.tenant_id) == (role, None)


@pytest.mark.parametrize("fields", [
    {"role": "tenant"},  # a restaurant needs its tenant id
    {"role": "tenant", "tenant": "t a"},
    {"role": "tenant", "tenant": "<script>alert(1)</script>"},
    {"role": "producer", "tenant": "t-a"},  # not a reader
    {"role": "root", "tenant": "t-a"},
])
def test_a_bad_sign_in_is_400_with_the_form_again_and_no_cookie(client: TestClient, fields: dict[str, str]) -> None:
    response = sign_in(client, None, **fields)
    assert response.status_code == 400
    assert 'role="alert"' in response.text and '<form method="post" action="/session"' in response.text
    assert "set-cookie" not in response.headers
    assert "<script>alert" not in response.text


def test_unknown_timezones_and_currencies_are_dropped_not_echoed(client: TestClient) -> None:
    response = sign_in(client, tenant="t-a", timezone="../../etc/passwd", currency="eur")
    assert response.headers["location"] == "/app/restaurant?tenant=t-a"


@pytest.mark.parametrize("headers", [
    {"Origin": ""},  # no Origin: not provably our page
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://testserver.evil.example"},
])
def test_sign_in_from_another_site_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    sent = {k: v for k, v in headers.items() if v}
    response = client.post("/session", data={"tenant": "t-a"}, headers=sent)
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_forms_that_are_not_small_urlencoded_forms_are_refused(client: TestClient) -> None:
    as_json = client.post("/session", json={"tenant": "t-a"}, headers=SAME_ORIGIN)
    assert as_json.status_code == 415
    huge = client.post("/session", content=b"tenant=" + b"a" * 10_000, headers={**SAME_ORIGIN, **FORM})
    assert huge.status_code == 413
    for response in (as_json, huge):
        assert "set-cookie" not in response.headers


def test_cluster_mode_refuses_the_form_and_says_where_tokens_come_from() -> None:
    settings = Settings(**CLUSTER_KWARGS)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        page = client.get("/")
        refused = client.post("/session", data={"tenant": "t-a"}, headers=SAME_ORIGIN)
    assert page.status_code == 200
    assert "identity provider" in page.text and 'action="/session"' not in page.text
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert "identity provider" in refused.text


def test_signing_out_forgets_the_cookie_only_from_our_pages(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    assert client.post("/session/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    response = client.post("/session/logout", headers=SAME_ORIGIN)
    assert (response.status_code, response.headers["location"]) == (303, "/")
    morsel = set_cookie(response)[session.SESSION_COOKIE]
    assert morsel.value == "" and int(morsel["max-age"]) == 0


# --- pages ------------------------------------------------------------------------------------------------------


def test_pages_send_the_signed_out_to_sign_in(client: TestClient) -> None:
    for path in ("/app/restaurant", "/app/operations", "/app/restaurant?tenant=t-a"):
        response = client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/")
    client.cookies.set(session.SESSION_COOKIE, "not-a-token")
    assert client.get("/app/restaurant").status_code == 303


def test_a_restaurant_opens_its_own_page_and_gets_403_for_anothers(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    own = client.get("/app/restaurant", params={"tz": "Asia/Kolkata", "currency": "INR"})
    assert own.status_code == 200
    assert re.search(r'data-tenant="t-a" data-role="tenant" data-timezone="Asia/Kolkata"\s+data-currency="INR"',
                     own.text)
    assert client.get("/app/restaurant", params={"tenant": "t-a"}).status_code == 200
    other = client.get("/app/restaurant", params={"tenant": "t-b"})
    assert other.status_code == 403 and "t-b" not in other.text.replace("Not your restaurant", "")
    assert client.get("/app/operations").status_code == 403


def test_the_restaurant_page_has_every_widget_and_its_stream_is_same_origin(client: TestClient,
                                                                           settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    page = client.get("/app/restaurant")
    assert page.status_code == 200
    for widget in ("w-sales", "w-completed", "w-prep", "w-couriers-count", "w-chart", "w-funnel", "w-top",
                   "w-couriers", "w-ratings", "w-alerts"):
        assert f'id="{widget}"' in page.text, widget
    assert 'id="stream-state"' in page.text
    # The page's EventSource opens /v1/stream on its own origin (the session cookie authenticates it).
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "`/v1/stream?" in (STATIC_DIR / "lib" / "data.js").read_text()


def test_the_restaurant_page_has_no_polling_loop() -> None:
    """Updates are pushed: no module of the restaurant page repeats a timer (its one timer moves the charts on
    at each minute, setting the next one each time, and requests nothing)."""
    modules = [m for m in STATIC_DIR.rglob("*.js") if "operations" not in m.relative_to(STATIC_DIR).parts]
    for module in modules:
        assert "setInterval" not in module.read_text(), module.name


def test_page_parameters_are_checked_and_escaped(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    page = client.get("/app/restaurant", params={"tz": '"><script>alert(1)</script>', "currency": "<b>"})
    assert page.status_code == 200
    assert 'data-timezone=""' in page.text and 'data-currency=""' in page.text and "<script>alert" not in page.text


def test_analysts_pick_a_restaurant_and_open_operations(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, role="analyst"))
    picker = client.get("/app/restaurant")
    assert picker.status_code == 200 and 'action="/app/restaurant"' in picker.text
    assert 'data-tenant="t-b"' in client.get("/app/restaurant", params={"tenant": "t-b"}).text
    assert client.get("/app/restaurant", params={"tenant": "no spaces"}).status_code == 400
    assert client.get("/app/operations").status_code == 200


def test_a_producer_token_opens_no_page(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, role="producer", tenants=["t-a"]))
    assert client.get("/app/restaurant").status_code == 403
    assert client.get("/app/operations").status_code == 403


def test_pages_are_not_part_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/session", "/session/logout", "/app/restaurant", "/app/operations"} & set(paths)


# --- the cookie on the API --------------------------------------------------------------------------------------


def test_the_api_reads_with_the_session_cookie(client: TestClient, settings: Settings) -> None:
    assert client.get("/v1/catalog").status_code == 401
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    assert client.get("/v1/catalog").status_code == 200
    # The tenant still comes from the token: another restaurant is 403 before any engine is asked.
    refused = client.get("/v1/live", params={"tenant": "t-b"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "this token may read only its own tenant"})


def test_an_authorization_header_wins_over_the_cookie(client: TestClient, settings: Settings) -> None:
    client.cookies.update(cookie_of(settings, tenant="t-a"))
    assert client.get("/v1/catalog", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    client.cookies.set(session.SESSION_COOKIE, "not-a-jwt")
    assert client.get("/v1/catalog").status_code == 401
    good = mint_token(settings, tenant="t-a")
    assert client.get("/v1/catalog", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def request(method: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "path": "/v1/x", "headers": raw, "query_string": b""})


def test_a_cookie_request_that_is_not_a_read_must_come_from_our_pages(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    cookie = f"{session.SESSION_COOKIE}={mint_token(settings, tenant='t-a')}"
    host = {"Host": "lakepulse.example", "Cookie": cookie}
    assert session.authenticate(request("GET", host), verifier).tenant_id == "t-a"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(Forbidden):
            session.authenticate(request(method, host), verifier)
        with pytest.raises(Forbidden):
            session.authenticate(request(method, {**host, "Origin": "https://evil.example"}), verifier)
        same = {**host, "Origin": "https://lakepulse.example", "Sec-Fetch-Site": "same-origin"}
        assert session.authenticate(request(method, same), verifier).tenant_id == "t-a"
    # A bearer header needs no Origin (not sent by a browser on its own); no credentials at all is 401.
    bearer = {"Host": "lakepulse.example", "Authorization": f"Bearer {mint_token(settings, tenant='t-b')}"}
    assert session.authenticate(request("POST", bearer), verifier).tenant_id == "t-b"
    with pytest.raises(AuthError):
        session.authenticate(request("POST", {"Host": "lakepulse.example"}), verifier)


# --- static files and the front end -------------------------------------------------------------------------------


def test_static_files_are_served_and_revalidated_but_nothing_else(client: TestClient) -> None:
    script = client.get("/static/restaurant.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache" and script.headers["etag"]
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    for path in ("/static/../templates/layout.html", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/nope.js"):
        assert client.get(path).status_code == 404


def test_every_module_a_page_imports_exists() -> None:
    """No build step checks the imports of our ES modules: this does (relative imports, from each file)."""
    modules = sorted(STATIC_DIR.rglob("*.js"))
    assert len(modules) >= 8
    for module in modules:
        for target in re.findall(r"""^import [^;]*? from '(\.{1,2}/[^']+)';$""", module.read_text(), re.MULTILINE):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"


def test_pages_reference_only_files_that_exist() -> None:
    for template in TEMPLATES_DIR.glob("*.html"):
        for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', template.read_text()):
            relative = url.removeprefix("/static/")
            if relative.startswith("vendor/"):
                assert relative in {"vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"}, url  # copied by make web
            else:
                assert (STATIC_DIR / relative).is_file(), f"{template.name} links missing {url}"


def test_the_front_ends_pure_functions(tmp_path: Path) -> None:
    """The anomaly rule, formatting and ranges, under node's own test runner (node 20 is on every machine)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--test", "test/"], cwd=WEB_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^# pass (\d+)", result.stdout, re.MULTILINE) and "# fail 0" in result.stdout
