"""API authentication: token verification, principals and tenancy, settings rules and `lakepulse token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from typer.testing import CliRunner

from lakepulse.auth import cli as api_cli
from lakepulse.auth import tokens as tokens_module
from lakepulse.auth.cli import parse_ttl
from lakepulse.auth.tokens import (
    MAX_PRODUCER_TENANTS,
    AuthError,
    AuthUnavailable,
    Forbidden,
    Principal,
    TenantRequestError,
    TokenVerifier,
    bearer_token,
    mint_token,
    principal_from_claims,
)
from lakepulse.cli import app
from lakepulse.settings import LOCAL_PLACEHOLDER_JWT_SECRET, LOCAL_PLACEHOLDER_SECRET, Settings
from tests.unit.cluster_settings import CLUSTER_KWARGS

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ISSUER = "lakepulse-local"
AUDIENCE = "lakepulse"
IDP_ISSUER = "https://idp.example.test/"
KID = "unit-key-1"


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), auth_jwt_issuer=ISSUER, auth_jwt_audience=AUDIENCE)


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims of a tenant token, with `overrides` applied (None removes a claim)."""
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "someone", "iat": now, "exp": now + timedelta(minutes=10),
        "tenant_id": "demo-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def assert_refused(verifier: TokenVerifier, token: str, reason: str) -> AuthError:
    """The verifier refuses `token` with a 401 whose message names `reason` and quotes no part of the token."""
    with pytest.raises(AuthError, match=reason) as refused:
        verifier.verify(token)
    assert refused.value.status_code == 401
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in str(refused.value)
    return refused.value


# --- local HS256 -----------------------------------------------------------------------------------


def test_minted_tenant_token_round_trips(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, tenant="demo-1", ttl=timedelta(minutes=30))
    assert verifier.verify(token) == Principal(subject="local-demo-1", tenant_id="demo-1", role="tenant")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert payload["exp"] - payload["iat"] == 1800
    assert "role" not in payload


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_minted_role_token_round_trips(settings: Settings, verifier: TokenVerifier, role: str) -> None:
    principal = verifier.verify(mint_token(settings, role=role, subject="ana@example.test"))
    assert principal == Principal(subject="ana@example.test", tenant_id=None, role=role)  # type: ignore[arg-type]
    assert principal.reads_all_tenants


def test_authenticate_reads_the_bearer_header(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, tenant="demo-2")
    assert verifier.authenticate(f"Bearer {token}").tenant_id == "demo-2"
    assert verifier.authenticate(f"bearer  {token} ").tenant_id == "demo-2"


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "Token abc"])
def test_bearer_header_must_be_present_and_bearer(header: str | None) -> None:
    with pytest.raises(AuthError, match="bearer|Bearer"):
        bearer_token(header)


def test_expired_token_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    token = mint_token(settings, tenant="demo-1", ttl=timedelta(hours=1), now=two_hours_ago)
    assert_refused(verifier, token, "expired")


def test_token_within_clock_leeway_is_accepted(verifier: TokenVerifier) -> None:
    # Expired 5 s ago: within the 30 s leeway for clock drift between hosts.
    token = hs256(claims(exp=datetime.now(UTC) - timedelta(seconds=5)))
    assert verifier.verify(token).tenant_id == "demo-1"


def test_a_verified_token_is_trusted_for_a_minute_at_most_and_never_past_its_expiry(
    settings: Settings, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    check = verifier._verified_claims
    monkeypatch.setattr(verifier, "_verified_claims", lambda token: checks.append(token) or check(token))
    now = datetime.now(UTC).timestamp()
    clock = [now]
    monkeypatch.setattr(tokens_module.time, "time", lambda: clock[0])
    long_lived = mint_token(settings, tenant="demo-1", ttl=timedelta(hours=1))
    short_lived = hs256(claims(exp=datetime.fromtimestamp(now + 20, UTC)))
    for token in (long_lived, long_lived, short_lived, short_lived):
        assert verifier.verify(token).tenant_id == "demo-1"
    assert checks == [long_lived, short_lived]  # each token's signature and claims were checked once
    clock[0] = now + 25  # past the short-lived token's exp: checked again (PyJWT's leeway still accepts it)
    verifier.verify(short_lived)
    verifier.verify(long_lived)
    assert checks == [long_lived, short_lived, short_lived]
    clock[0] = now + 61  # past the minute a verified token is trusted for
    verifier.verify(long_lived)
    assert checks[-1] == long_lived and len(checks) == 4
    # A token that fails is never kept: the next request with it is refused again, for the same reason.
    forged = hs256(claims(), secret="another-secret-that-is-long-enough-for-hs256")
    for _ in range(2):
        assert_refused(verifier, forged, "signature")


def test_token_from_the_future_is_refused(verifier: TokenVerifier) -> None:
    token = hs256(claims(nbf=datetime.now(UTC) + timedelta(minutes=5)))
    assert_refused(verifier, token, "not valid yet")


def test_wrong_audience_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    other = settings.model_copy(update={"auth_jwt_audience": "another-api"})
    assert_refused(verifier, mint_token(other, tenant="demo-1"), "audience")
    assert_refused(verifier, hs256(claims(aud=["another-api", "billing"])), "audience")


def test_audience_list_naming_us_is_accepted(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs256(claims(aud=["billing", AUDIENCE]))).tenant_id == "demo-1"


def test_wrong_issuer_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    other = settings.model_copy(update={"auth_jwt_issuer": "someone-else"})
    assert_refused(verifier, mint_token(other, tenant="demo-1"), "issuer")


@pytest.mark.parametrize("claim", ["exp", "aud", "iss", "sub"])
def test_token_missing_a_required_claim_is_refused(verifier: TokenVerifier, claim: str) -> None:
    assert_refused(verifier, hs256(claims(**{claim: None})), f"lacks the required {claim} claim")


def test_alg_none_token_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    assert token.endswith(".")  # really unsigned
    assert_refused(verifier, token, "algorithm")


def test_token_signed_with_another_secret_is_refused(verifier: TokenVerifier) -> None:
    assert_refused(verifier, hs256(claims(), secret="another-secret-also-long-enough-for-hs256"), "signature")


def test_other_hmac_algorithm_is_refused_even_with_the_right_secret(verifier: TokenVerifier) -> None:
    # The list is fixed: HS512 with our secret is still not HS256.
    with pytest.warns(jwt.InsecureKeyLengthWarning):  # HS512 wants 64 bytes; only the forger is warned
        token = hs256(claims(), algorithm="HS512")
    assert_refused(verifier, token, "algorithm")


def test_rs256_token_is_refused_by_the_hs256_verifier(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": KID})
    assert_refused(verifier, token, "algorithm")


@pytest.mark.parametrize("token", ["", "abc", "not.a.jwt", "a.b.c.d", "x" * 9000])
def test_malformed_or_huge_token_is_refused(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_tampered_payload_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    header, _, signature = mint_token(settings, tenant="demo-1").split(".")
    forged_claims = claims(tenant_id="demo-2")
    forged_claims["iat"] = int(forged_claims["iat"].timestamp())
    forged_claims["exp"] = int(forged_claims["exp"].timestamp())
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    assert_refused(verifier, f"{header}.{forged}.{signature}", "signature")


@pytest.mark.parametrize(
    "tenant", ["a'b", "x" * 65, "", "demo 1", "demo-1\n", "dëmo", "'; DROP TABLE t; --", 42, ["demo-1"]]
)
def test_bad_tenant_claim_is_refused(verifier: TokenVerifier, tenant: object) -> None:
    assert_refused(verifier, hs256(claims(tenant_id=tenant)), "tenant_id claim is not a tenant id")


def test_tenant_claim_of_64_characters_is_accepted(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs256(claims(tenant_id="x" * 64))).tenant_id == "x" * 64


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenant_id": None}, "neither a tenant_id claim nor an analyst or admin role"),
        ({"tenant_id": None, "role": "superuser"}, "role must be one of"),
        ({"tenant_id": None, "role": ["admin"]}, "role must be one of"),
        ({"tenant_id": None, "role": "tenant"}, "neither a tenant_id claim"),
        ({"role": "admin"}, "both a tenant_id and an analyst or admin role"),
        ({"sub": ""}, "no subject"),
    ],
)
def test_ambiguous_or_unknown_scope_is_refused(verifier: TokenVerifier, overrides: dict[str, Any], reason: str) -> None:
    assert_refused(verifier, hs256(claims(**overrides)), reason)


def test_explicit_tenant_role_with_tenant_claim_is_a_tenant(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs256(claims(role="tenant"))) == Principal("someone", "demo-1", "tenant")


# --- producer tokens (the ingest API) --------------------------------------------------------------------


def producer_claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims of a producer token for demo-1 and demo-2, with `overrides` applied (None removes one)."""
    return claims(**{"tenant_id": None, "role": "producer", "tenants": ["demo-1", "demo-2"], **overrides})


def test_producer_token_names_the_tenants_it_writes(verifier: TokenVerifier) -> None:
    principal = verifier.verify(hs256(producer_claims()))
    assert principal == Principal("someone", None, "producer", frozenset({"demo-1", "demo-2"}))
    assert (principal.may_write("demo-1"), principal.may_write("demo-2"), principal.may_write("demo-3")) == (
        True, True, False)
    assert principal.writes_events and not principal.reads_all_tenants


def test_producer_tenants_claim_may_repeat_a_tenant_and_hold_the_cap(verifier: TokenVerifier) -> None:
    assert verifier.verify(hs256(producer_claims(tenants=["a", "a"]))).tenants == frozenset({"a"})
    # The claims alone: a token naming this many tenants is longer than the verifier reads (MAX_TOKEN_CHARS).
    many = [f"t{n}" for n in range(MAX_PRODUCER_TENANTS)]
    assert len(principal_from_claims(producer_claims(tenants=many)).tenants) == MAX_PRODUCER_TENANTS
    with pytest.raises(AuthError, match=f"more than {MAX_PRODUCER_TENANTS}"):
        principal_from_claims(producer_claims(tenants=[*many, "one-more"]))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenants": None}, "needs a tenants claim"),
        ({"tenants": []}, "needs a tenants claim"),
        ({"tenants": "demo-1"}, "needs a tenants claim"),
        ({"tenants": {"demo-1": True}}, "needs a tenants claim"),
        ({"tenants": ["demo-1", "a'b"]}, "not a tenant id"),
        ({"tenants": ["demo-1", 42]}, "not a tenant id"),
        ({"tenants": ["demo-1", ["demo-2"]]}, "not a tenant id"),
        ({"tenants": ["demo-1", "x" * 65]}, "not a tenant id"),
        ({"tenant_id": "demo-1"}, "both a tenant_id and the producer role"),
    ],
)
def test_bad_producer_scope_is_refused(verifier: TokenVerifier, overrides: dict[str, Any], reason: str) -> None:
    assert_refused(verifier, hs256(producer_claims(**overrides)), reason)


@pytest.mark.parametrize("role", [None, "tenant", "analyst", "admin"])
def test_tenants_claim_without_the_producer_role_is_refused(verifier: TokenVerifier, role: str | None) -> None:
    tenant = "demo-1" if role in (None, "tenant") else None
    token = hs256(claims(role=role, tenant_id=tenant, tenants=["demo-2"]))
    assert_refused(verifier, token, "tenants claim but not the producer role")


# --- tenancy -----------------------------------------------------------------------------------------


def test_tenant_principal_reads_only_its_own_tenant() -> None:
    principal = Principal(subject="s", tenant_id="demo-1", role="tenant")
    assert principal.tenant_for(None) == "demo-1"
    assert principal.tenant_for("demo-1") == "demo-1"
    with pytest.raises(Forbidden, match="only its own tenant") as refused:
        principal.tenant_for("demo-2")
    assert refused.value.status_code == 403
    assert not principal.reads_all_tenants


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_analyst_and_admin_read_the_tenant_they_name(role: str) -> None:
    principal = Principal(subject="s", tenant_id=None, role=role)  # type: ignore[arg-type]
    assert principal.tenant_for("demo-2") == "demo-2"
    assert principal.tenant_for("demo-7") == "demo-7"
    with pytest.raises(TenantRequestError, match="name one") as missing:
        principal.tenant_for(None)
    assert missing.value.status_code == 400


@pytest.mark.parametrize("requested", ["a'b", "", "x" * 65, "demo-1\n"])
def test_malformed_requested_tenant_is_a_bad_request(requested: str) -> None:
    for principal in (Principal("s", "demo-1", "tenant"), Principal("s", None, "analyst")):
        with pytest.raises(TenantRequestError, match="tenant must be"):
            principal.tenant_for(requested)


@pytest.mark.parametrize(
    ("tenant_id", "role"), [(None, "tenant"), ("demo-1", "admin"), ("a'b", "tenant"), (None, "root")]
)
def test_principal_refuses_an_inconsistent_scope(tenant_id: str | None, role: str) -> None:
    with pytest.raises(ValueError):
        Principal(subject="s", tenant_id=tenant_id, role=role)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tenant_id", "role", "tenants"),
    [
        (None, "producer", frozenset()),
        ("demo-1", "producer", frozenset({"demo-1"})),
        (None, "producer", frozenset({"a'b"})),
        (None, "producer", frozenset(f"t{n}" for n in range(MAX_PRODUCER_TENANTS + 1))),
        (None, "producer", {"demo-1"}),  # a mutable set could change after the checks
        ("demo-1", "tenant", frozenset({"demo-2"})),
        (None, "admin", frozenset({"demo-2"})),
        (None, "analyst", frozenset({"demo-2"})),
    ],
)
def test_principal_keeps_tenants_to_producers(tenant_id: str | None, role: str, tenants: Any) -> None:
    with pytest.raises(ValueError):
        Principal(subject="s", tenant_id=tenant_id, role=role, tenants=tenants)  # type: ignore[arg-type]


def test_producer_reads_no_metrics() -> None:
    producer = Principal("p", None, "producer", frozenset({"demo-1"}))
    for requested in (None, "demo-1", "demo-2", "a'b"):
        with pytest.raises(Forbidden, match="producer token writes events; it may not read metrics") as refused:
            producer.tenant_for(requested)
        assert refused.value.status_code == 403


@pytest.mark.parametrize(
    ("principal", "writable"),
    [
        (Principal("p", None, "producer", frozenset({"demo-1", "demo-2"})), {"demo-1", "demo-2"}),
        (Principal("r", "demo-1", "tenant"), {"demo-1"}),
        (Principal("a", None, "admin"), {"demo-1", "demo-2", "demo-3"}),
        (Principal("a", None, "analyst"), set()),
    ],
)
def test_who_may_write_which_tenant(principal: Principal, writable: set[str]) -> None:
    assert {t for t in ("demo-1", "demo-2", "demo-3") if principal.may_write(t)} == writable
    assert principal.writes_events == bool(writable)


# --- minting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "needs a tenant"),
        ({"role": "admin", "tenant": "demo-1"}, "drop the tenant"),
        ({"role": "root"}, "role must be one of"),
        ({"tenant": "a'b"}, "tenant must be"),
        ({"tenant": "demo-1", "ttl": timedelta(0)}, "ttl must be positive"),
        ({"tenant": "demo-1", "ttl": timedelta(days=31)}, "at most 30 days"),
        ({"tenant": "demo-1", "subject": "  "}, "subject must not be empty"),
    ],
)
def test_mint_refuses_bad_requests(settings: Settings, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        mint_token(settings, **kwargs)


def test_minted_producer_token_round_trips(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, role="producer", tenants=["demo-2", "demo-1", "demo-2"], ttl=timedelta(minutes=5))
    assert verifier.verify(token) == Principal("local-producer", None, "producer", frozenset({"demo-1", "demo-2"}))
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert (payload["role"], payload["tenants"], payload["exp"] - payload["iat"]) == (
        "producer", ["demo-1", "demo-2"], 300)
    assert "tenant_id" not in payload


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"role": "producer"}, "at least one tenant"),
        ({"role": "producer", "tenants": []}, "at least one tenant"),
        ({"role": "producer", "tenants": "demo-1"}, "not one string"),
        ({"role": "producer", "tenant": "demo-1"}, "tenants, not tenant"),
        ({"role": "producer", "tenants": ["demo-1", "a'b"]}, "every tenant must be"),
        ({"role": "producer", "tenants": [f"t{n}" for n in range(MAX_PRODUCER_TENANTS + 1)]}, "at most 1000"),
        # Within the cap but too long for a header the verifier takes: refused when minted, not when used.
        ({"role": "producer", "tenants": [f"{n:064d}" for n in range(200)]}, "longer than 8192"),
        ({"tenant": "demo-1", "tenants": ["demo-1"]}, "only a producer token names several tenants"),
        ({"role": "admin", "tenants": ["demo-1"]}, "only a producer token names several tenants"),
    ],
)
def test_mint_refuses_bad_producer_requests(settings: Settings, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        mint_token(settings, **kwargs)


def test_mint_refuses_cluster_mode(cluster_settings: Settings) -> None:
    with pytest.raises(ValueError, match="identity provider"):
        mint_token(cluster_settings, tenant="demo-1")


# --- settings ------------------------------------------------------------------------------------------


def cluster_kwargs(**overrides: Any) -> dict[str, Any]:
    base = {**CLUSTER_KWARGS, **overrides}
    return {k: v for k, v in base.items() if v is not None}


def test_cluster_settings_with_real_values_are_accepted() -> None:
    settings = Settings(**cluster_kwargs())
    assert settings.mode == "cluster"
    assert "r" * 40 not in repr(settings)  # the secret does not leak into logs


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"auth_jwt_secret": LOCAL_PLACEHOLDER_JWT_SECRET}, "AUTH_JWT_SECRET still holds the local placeholder"),
        ({"auth_jwt_secret": None}, "AUTH_JWT_SECRET still holds the local placeholder"),
        ({"auth_jwt_secret": LOCAL_PLACEHOLDER_SECRET}, "AUTH_JWT_SECRET still holds the local placeholder"),
        ({"auth_jwks_url": None}, "set LAKEPULSE_AUTH_JWKS_URL"),
        ({"auth_jwks_url": ""}, "set LAKEPULSE_AUTH_JWKS_URL"),
        ({"auth_jwks_url": "http://idp.example.test/jwks.json"}, "must be an https:// URL"),
        ({"auth_jwks_url": "file:///etc/jwks.json"}, "must be an https:// URL"),
        ({"s3_secret_key": LOCAL_PLACEHOLDER_SECRET}, "S3_SECRET_KEY still holds the local placeholder"),
    ],
)
def test_cluster_settings_refuse_local_auth(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(**cluster_kwargs(**overrides))


def test_settings_refuse_a_short_jwt_secret_and_hide_it() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes") as refused:
        Settings(auth_jwt_secret=SecretStr("short-s3cr3t"))
    assert "short-s3cr3t" not in str(refused.value)


def test_local_defaults() -> None:
    settings = Settings(mode="local")
    assert settings.auth_enabled is True
    assert settings.auth_jwt_secret.get_secret_value() == LOCAL_PLACEHOLDER_JWT_SECRET
    assert (settings.auth_jwt_audience, settings.auth_jwt_issuer, settings.auth_jwks_url) == (
        "lakepulse", "lakepulse-local", None)


# --- cluster mode: RS256 through a JWKS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksServer(ThreadingHTTPServer):
    """Serves one JWKS document on 127.0.0.1 and counts the requests for it."""

    body = b""
    hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"


class _JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    """A JWKS endpoint on 127.0.0.1 publishing `rsa_key`'s public half under KID."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    server = JwksServer(("127.0.0.1", 0), _JwksHandler)
    server.body = json.dumps({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cluster_settings(jwks: JwksServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # PyJWKClient uses urllib, which honours proxy variables; the JWKS server is local.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return Settings(**cluster_kwargs(auth_jwks_url=jwks.url, auth_jwt_issuer=IDP_ISSUER))


def rs256(key: rsa.RSAPrivateKey, kid: str = KID, **overrides: Any) -> str:
    return jwt.encode(claims(**{"iss": IDP_ISSUER, **overrides}), key, algorithm="RS256", headers={"kid": kid})


def test_rs256_token_verifies_through_the_jwks(cluster_settings: Settings, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(cluster_settings)
    assert verifier.algorithms == ("RS256",)
    assert verifier.verify(rs256(rsa_key)) == Principal("someone", "demo-1", "tenant")
    analyst = verifier.verify(rs256(rsa_key, tenant_id=None, role="analyst"))
    assert analyst.reads_all_tenants and analyst.tenant_for("demo-3") == "demo-3"


def test_rs256_producer_token_verifies_through_the_jwks(cluster_settings: Settings,
                                                        rsa_key: rsa.RSAPrivateKey) -> None:
    token = rs256(rsa_key, tenant_id=None, role="producer", tenants=["rest-1"])
    principal = TokenVerifier(cluster_settings).verify(token)
    assert principal == Principal("someone", None, "producer", frozenset({"rest-1"}))


def test_jwks_is_fetched_once_then_cached(cluster_settings: Settings, rsa_key: rsa.RSAPrivateKey,
                                          jwks: JwksServer) -> None:
    verifier = TokenVerifier(cluster_settings)
    before = jwks.hits  # the server is shared by the module's tests
    for _ in range(5):
        assert verifier.verify(rs256(rsa_key)).tenant_id == "demo-1"
    assert jwks.hits == before + 1


def test_rs256_token_from_an_unknown_key_is_refused(cluster_settings: Settings) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = TokenVerifier(cluster_settings)
    assert_refused(verifier, rs256(stranger, kid="not-published"), "does not publish")
    # Published kid, wrong key: the signature does not verify.
    assert_refused(verifier, rs256(stranger), "signature")


def test_cluster_verifier_checks_audience_issuer_and_expiry(cluster_settings: Settings,
                                                             rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(cluster_settings)
    assert_refused(verifier, rs256(rsa_key, aud="another-api"), "audience")
    assert_refused(verifier, rs256(rsa_key, iss=ISSUER), "issuer")  # a local token's issuer
    assert_refused(verifier, rs256(rsa_key, exp=datetime.now(UTC) - timedelta(hours=1)), "expired")


def test_locally_minted_token_is_refused_in_cluster_mode(settings: Settings, cluster_settings: Settings) -> None:
    token = hs256(claims(iss=IDP_ISSUER), secret=cluster_settings.auth_jwt_secret.get_secret_value())
    assert_refused(TokenVerifier(cluster_settings), token, "algorithm")


def test_hs256_forged_with_the_public_key_is_refused(cluster_settings: Settings,
                                                     rsa_key: rsa.RSAPrivateKey) -> None:
    # The classic confusion attack: sign HS256 with the published RSA public key as the HMAC secret.
    # PyJWT refuses to build such a token, so build it the way an attacker would.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    payload = claims(iss=IDP_ISSUER)
    payload.update(iat=int(payload["iat"].timestamp()), exp=int(payload["exp"].timestamp()))
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode()) + b"." + b64(
        json.dumps(payload).encode())
    signature = b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    assert_refused(TokenVerifier(cluster_settings), (signing_input + b"." + signature).decode(), "algorithm")


def test_unreachable_jwks_is_a_503_not_a_401(rsa_key: rsa.RSAPrivateKey) -> None:
    # A port nothing listens on: bind one, then close it.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    url = f"http://127.0.0.1:{port}/jwks.json"
    settings = Settings(**cluster_kwargs(auth_jwks_url=url, auth_jwt_issuer=IDP_ISSUER))
    with pytest.raises(AuthUnavailable, match="cannot be fetched") as unavailable:
        TokenVerifier(settings).verify(rs256(rsa_key))
    assert unavailable.value.status_code == 503


# --- `lakepulse token` ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)),
     ("7d", timedelta(days=7))],
)
def test_parse_ttl(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "12", "h", "-1h", "1.5h", "12hours", "12 h", "1w", "9999999d"])
def test_parse_ttl_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="e.g. 30m, 12h or 7d"):
        parse_ttl(text)


@pytest.fixture
def cli_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(api_cli, "get_settings", lambda: settings)
    return settings


def test_cli_prints_only_a_token_that_verifies(cli_settings: Settings) -> None:
    result = CliRunner().invoke(app, ["token", "--tenant", "demo-3", "--ttl", "30m"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert TokenVerifier(cli_settings).verify(token) == Principal("local-demo-3", "demo-3", "tenant")
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert payload["exp"] - payload["iat"] == 30 * 60


def test_cli_mints_analyst_tokens(cli_settings: Settings) -> None:
    result = CliRunner().invoke(app, ["token", "--role", "analyst", "--subject", "ana"])
    assert result.exit_code == 0, result.stderr
    principal = TokenVerifier(cli_settings).verify(result.stdout.strip())
    assert principal == Principal("ana", None, "analyst")


def test_cli_mints_producer_tokens_for_repeated_tenants(cli_settings: Settings) -> None:
    result = CliRunner().invoke(app, ["token", "--role", "producer", "--tenant", "demo-1", "--tenant", "demo-2"])
    assert result.exit_code == 0, result.stderr
    principal = TokenVerifier(cli_settings).verify(result.stdout.strip())
    assert principal == Principal("local-producer", None, "producer", frozenset({"demo-1", "demo-2"}))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--tenant", "demo-1", "--tenant", "demo-2"], "only a producer token"),
        (["--role", "analyst", "--tenant", "demo-1", "--tenant", "demo-2"], "only a producer token"),
        (["--role", "producer"], "at least one tenant"),
        (["--role", "producer", "--tenant", "demo-1", "--tenant", "a'b"], "every tenant must be"),
        (["--role", "analyst", "--tenant", "demo-1"], "drop the"),
        (["--tenant", "demo-1", "--ttl", "soon"], "e.g. 30m"),
        (["--tenant", "a'b"], "tenant must be"),
        ([], "needs a tenant"),
    ],
)
def test_cli_errors_go_to_stderr_with_exit_2(cli_settings: Settings, args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, ["token", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert reason in " ".join(result.stderr.split())


def test_cli_refuses_in_cluster_mode(cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_cli, "get_settings", lambda: cluster_settings)
    result = CliRunner().invoke(app, ["token", "--tenant", "demo-1"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "identity provider" in result.stderr
