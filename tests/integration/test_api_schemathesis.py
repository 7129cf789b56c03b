"""Property-based tests of the metrics API from its own OpenAPI document, with the real engines behind it
(Trino over Delta, Pinot's broker, the seam on MinIO, PostgreSQL for configuration) and valid tenant tokens: no
answer is a 5xx other than the documented 503, every status is documented, and no body carries engine or SQL text.

The fuzzer creates dashboards and alert rules: it writes as a throwaway tenant whose configuration is deleted
before and after the module, never as a demo restaurant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import delete

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import AuthError, TokenVerifier, mint_token
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.models import Tenant
from lakepulse.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.needs("trino", "pinot", "minio", "postgres")]

TENANT = "schemathesis-rest-0001"  # no events: the data endpoints answer empty, the config ones fill it
# The fuzzer's budget is not the point here: the rate limit has its own tests.
APP = create_app(get_settings().model_copy(update={"api_rate_limit_per_s": 0.0}))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
VERIFIER = TokenVerifier(APP.state.settings)
ENGINE_WORDS = ("SELECT", "metrics_minute", "orders_live", "Trino", "Pinot", "pinotdb", "Traceback", "Exception",
                "Query failed", "line 1:")
STATUSES: Counter[int] = Counter()  # of the data endpoints (/v1/...), which all need a token


@schema.auth()
class TenantToken:
    """Every generated request carries a valid token of one restaurant (its `tenant` may name another: 403)."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return mint_token(APP.state.settings, tenant=TENANT, ttl=timedelta(minutes=30), subject="schemathesis")

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def forget_tenant() -> None:
    """Delete the fuzzer's tenant with everything it configured (dashboards, widgets, rules, history cascade)."""
    db = ConfigDatabase.from_settings(APP.state.settings, "lakepulse-tests")
    try:
        with db.session() as session:
            session.execute(delete(Tenant).where(Tenant.tenant_id == TENANT))
            session.commit()
    finally:
        db.close()


@pytest.fixture(scope="module", autouse=True)
def served_with_tokens() -> Iterator[None]:
    forget_tenant()  # what an interrupted earlier run left behind
    yield
    forget_tenant()
    # A fuzzer whose requests stopped carrying the token (every data answer a documented 401) must not pass.
    assert STATUSES[200] >= 10, STATUSES


def carries_a_valid_token(case: schemathesis.Case) -> bool:
    try:
        VERIFIER.authenticate((case.headers or {}).get("Authorization"))
    except AuthError:
        return False
    return True


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_no_engine_text(case: schemathesis.Case) -> None:
    response = case.call()
    if case.operation.path.startswith("/v1/"):
        STATUSES[response.status_code] += 1
    documented = case.operation.definition.raw.get("responses", {})
    if response.status_code == 401:
        assert not carries_a_valid_token(case), response.text
    if response.status_code >= 500:
        assert response.status_code == 503 and "503" in documented, response.text
        assert response.headers.get("retry-after")
    else:
        assert str(response.status_code) in {*documented, "405"}, (response.status_code, response.text)
    if response.status_code >= 400:
        leaked = [word for word in ENGINE_WORDS if word in response.text and word not in sent_text(case)]
        assert not leaked, (leaked, response.text)


def sent_text(case: schemathesis.Case) -> str:
    """What the request itself carried: an answer that quotes a bad parameter back (`unknown metric
    'metrics_minute'`) echoes the caller, it does not leak the engine."""
    parts = [*(case.path_parameters or {}).values(), *(case.query or {}).values()]
    return repr(parts)
