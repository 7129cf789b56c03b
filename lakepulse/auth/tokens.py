"""Bearer-token authentication for the metrics and ingest APIs: verify a JWT, turn its claims into a `Principal`.

Locally tokens are HS256, signed with the secret from settings (`mint_token`, `lakepulse token`); in
cluster mode they come from the identity provider and are RS256, checked against its JWKS. The algorithm
list is fixed per mode and never read from the token, and the symmetric and asymmetric families are never
accepted by the same verifier (algorithm confusion). The tenant a request reads always comes from the token.

Producers (the services that post events to the ingest API) hold tokens with the role `producer` and a
`tenants` claim: the restaurants they may write events for. A producer token reads no metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Literal, get_args

import jwt

from lakepulse.events import TENANT_ID_PATTERN
from lakepulse.settings import Settings

Role = Literal["tenant", "producer", "analyst", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
# Roles that read every tenant's metrics (naming one per request).
CROSS_TENANT_READERS: Final = ("analyst", "admin")
LOCAL_ALGORITHMS: Final = ("HS256",)
CLUSTER_ALGORITHMS: Final = ("RS256",)
# `sub` too: every decision and log line names who asked.
REQUIRED_CLAIMS: Final = ("exp", "aud", "iss", "sub")
# The identity provider's clock and ours drift by seconds; that should not refuse a fresh token.
LEEWAY: Final = timedelta(seconds=30)
# Real tokens are under 2 kB; a huge header is refused before it is base64-decoded and parsed.
MAX_TOKEN_CHARS: Final = 8192
# Local tokens are for development; a month is the longest one that makes sense.
MAX_LOCAL_TTL: Final = timedelta(days=30)
# A slow identity provider must not hold requests for long; keys are cached and refreshed every 5 minutes
# (and on an unknown `kid`, which PyJWKClient rate-limits).
JWKS_TIMEOUT_S: Final = 5.0
JWKS_LIFESPAN_S: Final = 300.0
# A token verified once is trusted for this long (never past its `exp`): PyJWT spends ~0.2-0.4 ms parsing and
# checking one, which capped a cache-hit read at ~2,000/s per core; a dashboard sends the same token each time.
VERIFIED_FOR_S: Final = 60.0
MAX_VERIFIED_TOKENS: Final = 20_000

_TENANT_RE = re.compile(TENANT_ID_PATTERN)
TENANT_RULE: Final = "1-64 characters of A-Z, a-z, 0-9, _ and -"
# A producer token's `tenants` claim: a bounded list (each name checked on every request). MAX_TOKEN_CHARS
# bounds it further (a few hundred typical ids); a service writing for more restaurants holds several tokens.
MAX_PRODUCER_TENANTS: Final = 1000


class AccessError(Exception):
    """A request refused because of who is asking; `status_code` is the HTTP status to answer."""

    status_code: ClassVar[int] = 400


class AuthError(AccessError):
    """No token, or one that does not verify: 401."""

    status_code = 401


class Forbidden(AccessError):
    """A valid token asking for data it may not read: 403."""

    status_code = 403


class TenantRequestError(AccessError):
    """A request naming no tenant where one is needed, or a malformed one: 400."""

    status_code = 400


class AuthUnavailable(AccessError):
    """The identity provider's keys cannot be fetched, so the token was not judged: 503."""

    status_code = 503


def is_tenant_id(value: object) -> bool:
    """Whether `value` is a tenant id of the event contract (`[A-Za-z0-9_-]{1,64}`)."""
    # fullmatch: with `$`, re.match would also accept a trailing newline.
    return isinstance(value, str) and _TENANT_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Principal:
    """Who is asking: a restaurant bound to its tenant, a producer bound to the tenants it writes for, or an
    analyst/admin who may read every tenant."""

    subject: str
    tenant_id: str | None
    role: Role
    # The tenants a producer writes events for; empty for every other role.
    tenants: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # The invariants every authorisation decision leans on: a tenant principal has exactly one valid
        # tenant; a producer has no tenant_id and a non-empty, bounded set of valid tenants; a cross-tenant
        # role has neither.
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if (self.role == "tenant") != (self.tenant_id is not None):
            raise ValueError("a tenant principal needs a tenant_id; producer, analyst and admin principals have none")
        if self.tenant_id is not None and not is_tenant_id(self.tenant_id):
            raise ValueError(f"tenant_id must be {TENANT_RULE}")
        if not isinstance(self.tenants, frozenset):
            raise ValueError("tenants must be a frozenset")
        if self.role == "producer":
            if not 1 <= len(self.tenants) <= MAX_PRODUCER_TENANTS:
                raise ValueError(f"a producer principal needs 1 to {MAX_PRODUCER_TENANTS} tenants")
            if not all(is_tenant_id(tenant) for tenant in self.tenants):
                raise ValueError(f"every tenant of a producer must be {TENANT_RULE}")
        elif self.tenants:
            raise ValueError("only a producer principal has tenants")

    @property
    def reads_all_tenants(self) -> bool:
        """Whether this principal may read any tenant (analyst or admin)."""
        return self.role in CROSS_TENANT_READERS

    @property
    def writes_events(self) -> bool:
        """Whether this principal may write events for some tenant (every role but analyst)."""
        return self.role != "analyst"

    def may_write(self, tenant_id: str) -> bool:
        """Whether this principal may write an event of `tenant_id`: its own (tenant), its tenants (producer),
        any (admin), none (analyst)."""
        if self.role == "producer":
            return tenant_id in self.tenants
        if self.role == "tenant":
            return tenant_id == self.tenant_id
        return self.role == "admin"

    def tenant_for(self, requested: str | None) -> str:
        """The tenant a request reads: a tenant token's own (another → Forbidden); analyst/admin must name one;
        a producer reads nothing (Forbidden)."""
        if self.role == "producer":
            raise Forbidden("a producer token writes events; it may not read metrics")
        if requested is not None and not is_tenant_id(requested):
            raise TenantRequestError(f"tenant must be {TENANT_RULE}")
        if self.tenant_id is not None:
            if requested is not None and requested != self.tenant_id:
                raise Forbidden("this token may read only its own tenant")
            return self.tenant_id
        if requested is None:
            raise TenantRequestError(f"an {self.role} token may read every tenant: name one with the tenant parameter")
        return requested


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal of verified claims: `tenant_id` for a restaurant, `role` producer with `tenants`, or `role`
    analyst/admin; else AuthError."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("token has no subject")
    role = claims.get("role", "tenant")
    if role not in ROLES:  # also refuses a list or an object in place of one role
        raise AuthError(f"token role must be one of {', '.join(ROLES)}")
    tenant = claims.get("tenant_id")
    # Ambiguous scope is refused rather than guessed: a token names its tenants in exactly one way.
    if role != "producer" and "tenants" in claims:
        raise AuthError("token carries a tenants claim but not the producer role")
    if role == "tenant":
        if tenant is None:
            raise AuthError("token has neither a tenant_id claim nor an analyst or admin role, nor the producer role")
        if not is_tenant_id(tenant):
            raise AuthError(f"token's tenant_id claim is not a tenant id ({TENANT_RULE})")
        return Principal(subject=subject, tenant_id=tenant, role="tenant")
    if tenant is not None:
        kind = "the producer role" if role == "producer" else "an analyst or admin role"
        raise AuthError(f"token carries both a tenant_id and {kind}")
    if role == "producer":
        return Principal(subject=subject, tenant_id=None, role="producer", tenants=_producer_tenants(claims))
    return Principal(subject=subject, tenant_id=None, role="analyst" if role == "analyst" else "admin")


def _producer_tenants(claims: Mapping[str, Any]) -> frozenset[str]:
    """The `tenants` claim of a producer token as a set; AuthError unless it is a bounded list of tenant ids."""
    tenants = claims.get("tenants")
    if not isinstance(tenants, list) or not tenants:
        raise AuthError("a producer token needs a tenants claim: a non-empty list of tenant ids")
    if len(tenants) > MAX_PRODUCER_TENANTS:
        raise AuthError(f"a producer token's tenants claim names more than {MAX_PRODUCER_TENANTS} tenants")
    if not all(is_tenant_id(tenant) for tenant in tenants):
        raise AuthError(f"a producer token's tenants claim holds something that is not a tenant id ({TENANT_RULE})")
    return frozenset(tenants)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value; AuthError when missing or not bearer."""
    if not authorization or not authorization.strip():
        raise AuthError("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


# Most specific first: InvalidSignatureError is a DecodeError, PyJWKClientConnectionError a PyJWKClientError.
_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token is not meant for this API (audience)"),
    (jwt.InvalidIssuerError, "token was not issued by the trusted issuer"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidKeyError, "token is signed with a key that is not accepted"),
    (jwt.PyJWKClientError, "token is signed by a key the identity provider does not publish"),
    (jwt.DecodeError, "token is malformed"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    # Our own wording only: PyJWT's messages can quote header fields an attacker chose.
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the required {exc.claim} claim"
    return next((reason for kind, reason in _REASONS if isinstance(exc, kind)), "token is invalid")


class TokenVerifier:
    """Verifies bearer JWTs for one deployment: HS256 with the local secret, or RS256 via the JWKS in cluster mode."""

    def __init__(self, settings: Settings) -> None:
        self.audience = settings.auth_jwt_audience
        self.issuer = settings.auth_jwt_issuer
        self.algorithms: tuple[str, ...]
        self._secret: str | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.mode == "local":
            self.algorithms = LOCAL_ALGORITHMS
            self._secret = settings.auth_jwt_secret.get_secret_value()
        else:
            if not settings.auth_jwks_url:  # Settings refuses this already; kept for hand-built settings
                raise ValueError("cluster mode needs LAKEPULSE_AUTH_JWKS_URL")
            self.algorithms = CLUSTER_ALGORITHMS
            self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, lifespan=JWKS_LIFESPAN_S, timeout=JWKS_TIMEOUT_S)
        # token → (trusted until, principal); only tokens that verified are kept.
        self._verified: dict[str, tuple[float, Principal]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; AuthError (never quoting the token) if it does not verify."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("bearer token is empty or too long")
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[0] > now:
            return known[1]
        claims = self._verified_claims(token)
        principal = principal_from_claims(claims)
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()  # a crude bound: the next requests verify their tokens again
        self._verified[token] = (min(float(claims["exp"]), now + VERIFIED_FOR_S), principal)
        return principal

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            # The same check decode makes, done first so that a token of the wrong family never makes
            # the JWKS client look its `kid` up (an unknown one forces a refetch).
            if jwt.get_unverified_header(token).get("alg") not in self.algorithms:
                raise jwt.InvalidAlgorithmError("algorithm not accepted")
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable("the identity provider's signing keys cannot be fetched; try again") from exc
        except jwt.PyJWKSetError as exc:
            raise AuthUnavailable("the identity provider publishes no usable signing keys") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(_reason(exc)) from exc
        return dict(claims)

    def _key_for(self, token: str) -> jwt.PyJWK | str:
        # A PyJWK is bound to its own algorithm, which PyJWT also checks against the token's `alg`.
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token)
        assert self._secret is not None
        return self._secret

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an Authorization header value; AuthError if it is missing or does not verify."""
        return self.verify(bearer_token(authorization))


def mint_token(
    settings: Settings,
    tenant: str | None = None,
    role: str | None = None,
    ttl: timedelta = timedelta(hours=12),
    subject: str | None = None,
    now: datetime | None = None,
    tenants: Collection[str] | None = None,
) -> str:
    """A local HS256 token for one tenant, for a producer of `tenants`, or for an analyst/admin role; ValueError
    in cluster mode or on bad input."""
    if settings.mode != "local":
        raise ValueError("cluster mode takes tokens from the identity provider; lakepulse mints only local ones")
    role = role or "tenant"
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "producer":
        if tenant is not None:
            raise ValueError("a producer token names its tenants with tenants, not tenant")
        if not tenants:
            raise ValueError("a producer token needs at least one tenant it may write for")
        if isinstance(tenants, str):  # a string is a collection of characters, not of tenants
            raise ValueError("tenants must be a list of tenant ids, not one string")
        if len(set(tenants)) > MAX_PRODUCER_TENANTS:
            raise ValueError(f"a producer token names at most {MAX_PRODUCER_TENANTS} tenants")
        if not all(is_tenant_id(name) for name in tenants):
            raise ValueError(f"every tenant must be {TENANT_RULE}")
    elif tenants is not None:
        raise ValueError(f"only a producer token names several tenants; a {role} token takes none")
    elif role == "tenant":
        if tenant is None:
            raise ValueError("a tenant token needs a tenant (or choose the producer, analyst or admin role)")
        if not is_tenant_id(tenant):
            raise ValueError(f"tenant must be {TENANT_RULE}")
    elif tenant is not None:
        raise ValueError(f"an {role} token reads every tenant and names none; drop the tenant")
    if not timedelta(0) < ttl <= MAX_LOCAL_TTL:
        raise ValueError(f"ttl must be positive and at most {MAX_LOCAL_TTL.days} days")
    if subject is not None and not subject.strip():
        raise ValueError("subject must not be empty")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.auth_jwt_issuer,
        "aud": settings.auth_jwt_audience,
        "sub": subject or f"local-{tenant or role}",
        "iat": issued,
        "exp": issued + ttl,
    }
    if role == "tenant":
        claims["tenant_id"] = tenant
    else:
        claims["role"] = role
    if role == "producer" and tenants:
        claims["tenants"] = sorted(set(tenants))
    token = jwt.encode(claims, settings.auth_jwt_secret.get_secret_value(), algorithm=LOCAL_ALGORITHMS[0])
    if len(token) > MAX_TOKEN_CHARS:  # the verifier would refuse it; say so now, not at the first request
        raise ValueError(f"the token would be longer than {MAX_TOKEN_CHARS} characters: name fewer tenants")
    return token


class RenewingToken:
    """A local token minted on first use and again at half its lifetime, for clients that run longer than one
    token lives (the demo traffic runs for a year); call it for the current token. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        ttl: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.monotonic,
        **claims: Any,
    ) -> None:
        self._mint = lambda: mint_token(settings, ttl=ttl, **claims)
        self._mint()  # refuse bad settings or claims here, not at the first request
        self._renew_after_s = ttl.total_seconds() / 2
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __call__(self) -> str:
        """The current token, minted anew once half its lifetime has passed."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token = self._mint()
                self._renew_at = self._clock() + self._renew_after_s
            return self._token


# --- stream tokens: what a browser's EventSource carries in its URL -----------------------------------------
# An EventSource cannot send an Authorization header, and the long-lived bearer token must never be in a URL
# (access logs, history, Referer). So the metrics API mints, for a caller it has authenticated, a short-lived
# token that opens one tenant's live stream and nothing else: an audience of its own and a `purpose` claim,
# HS256 under a key derived from the deployment's secret (so it never verifies as a bearer token, not even
# locally, where bearer tokens are HS256 under that secret itself), bound to the one tenant the caller may read.
# Every API process and host derives the same key, so a token minted by one opens a stream on any other.
STREAM_PURPOSE: Final = "stream"
STREAM_ALGORITHM: Final = "HS256"
STREAM_LEEWAY: Final = timedelta(seconds=5)
STREAM_REQUIRED_CLAIMS: Final = ("exp", "iat", "aud", "iss", "sub")
_STREAM_KEY_LABEL: Final = b"lakepulse stream token key v1"


def stream_audience(settings: Settings) -> str:
    """The audience of stream tokens: never the bearer tokens' own."""
    return f"{settings.auth_jwt_audience}#stream"


def _stream_key(settings: Settings) -> bytes:
    return hmac.new(settings.auth_jwt_secret.get_secret_value().encode(), _STREAM_KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class StreamGrant:
    """What a verified stream token allows: who asked for it and the one tenant whose stream it opens."""

    principal: Principal
    tenant_id: str
    expires_at: datetime


def mint_stream_token(settings: Settings, principal: Principal, tenant_id: str,
                      now: datetime | None = None) -> tuple[str, datetime]:
    """A stream token of `principal` for `tenant_id` (one it may read) and its expiry, `stream_token_ttl_s`
    from `now`; ValueError for a tenant the principal may not read."""
    if principal.role == "producer":
        raise ValueError("a producer token reads no metrics")
    if not is_tenant_id(tenant_id):
        raise ValueError(f"tenant must be {TENANT_RULE}")
    if principal.tenant_id is not None and principal.tenant_id != tenant_id:
        raise ValueError("a tenant token may open only its own tenant's stream")
    issued = now or datetime.now(UTC)
    expires = issued + timedelta(seconds=settings.stream_token_ttl_s)
    claims: dict[str, Any] = {
        "iss": settings.auth_jwt_issuer, "aud": stream_audience(settings), "sub": principal.subject,
        "purpose": STREAM_PURPOSE, "role": principal.role, "tenant_id": tenant_id, "iat": issued, "exp": expires,
    }
    return jwt.encode(claims, _stream_key(settings), algorithm=STREAM_ALGORITHM), expires


def verify_stream_token(settings: Settings, token: str) -> StreamGrant:
    """The grant of a stream token; AuthError (never quoting it) for anything else, bearer tokens included."""
    hint = "; the token parameter takes a stream token from POST /v1/stream/token"
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise AuthError("stream token is empty or too long" + hint)
    try:
        if jwt.get_unverified_header(token).get("alg") != STREAM_ALGORITHM:
            raise jwt.InvalidAlgorithmError("algorithm not accepted")
        claims = jwt.decode(token, _stream_key(settings), algorithms=[STREAM_ALGORITHM],
                            audience=stream_audience(settings), issuer=settings.auth_jwt_issuer,
                            leeway=STREAM_LEEWAY, options={"require": list(STREAM_REQUIRED_CLAIMS)})
    except jwt.PyJWTError as exc:
        raise AuthError(f"stream {_reason(exc)}{hint}") from exc
    subject, role, tenant = claims.get("sub"), claims.get("role"), claims.get("tenant_id")
    if claims.get("purpose") != STREAM_PURPOSE or not isinstance(subject, str) or not subject:
        raise AuthError("token is not a stream token" + hint)
    if not is_tenant_id(tenant):
        raise AuthError("stream token names no tenant")
    if role == "tenant":
        principal = Principal(subject=subject, tenant_id=tenant, role="tenant")
    elif role in CROSS_TENANT_READERS:
        principal = Principal(subject=subject, tenant_id=None, role="analyst" if role == "analyst" else "admin")
    else:
        raise AuthError("stream token carries a role that reads no metrics")
    return StreamGrant(principal, str(tenant), datetime.fromtimestamp(float(claims["exp"]), UTC))
