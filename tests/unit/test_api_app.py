"""The metrics API over HTTP with injected engine readers: authentication and tenancy, 400s, the series across
the seam, engine failures as 503s without engine text, hostile input, and the engine readers' SQL and binding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pinotdb
import pytest
import trino.exceptions
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pinotdb.db import apply_parameters
from pydantic import SecretStr

from lakepulse.api.app import create_app
from lakepulse.api.deps import get_batch_source, get_seam_source, get_speed_source
from lakepulse.api.sources import BatchSource, MinuteRows, SeamSource, SourceUnavailable, SpeedSource, totals_row
from lakepulse.auth.tokens import mint_token
from lakepulse.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
MINUTE = timedelta(minutes=1)
T9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SEAM = datetime(2026, 3, 2, 10, 7, tzinfo=UTC)
SERIES = "/v1/metrics/{}/series"
# Words an engine error or our SQL would carry; none may reach a client.
ENGINE_WORDS = ("SELECT", "metrics_minute", "Trino", "Pinot", "pinotdb", "trino", "Traceback", "broker", "Exception")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def trino_row(tenant: str, metric: str, start: datetime, count: int, total: float | None = None,
              dims: dict[str, str] | None = None) -> dict[str, Any]:
    """A minute row as the trino client returns Delta's: aware datetimes, a dict for the map, a list, bytes."""
    dims = dims or {}
    return {"tenant_id": tenant, "metric": metric, "dims_key": "|".join(f"{k}={v}" for k, v in sorted(dims.items())),
            "dims": dims, "window_start": start, "window_end": start + MINUTE, "count": count, "sum": total,
            "min": None, "max": None, "hll_sketch": None, "theta_sketch": None, "buckets": None,
            "updated_at": start + timedelta(minutes=70)}


def pinot_row(tenant: str, metric: str, start: datetime, count: int, total: float | None = None,
              dims: dict[str, str] | None = None, updated_at: datetime | None = None) -> dict[str, Any]:
    """A minute row as the broker returns it: epoch milliseconds, JSON text, hex bytes, 0 for null numbers."""
    dims = dims or {}
    return {"tenant_id": tenant, "metric": metric, "dims_key": "|".join(f"{k}={v}" for k, v in sorted(dims.items())),
            "dims": json.dumps(dims), "window_start": ms(start), "window_end": ms(start + MINUTE), "count": count,
            "sum": 0.0 if total is None else total, "min": 0.0, "max": 0.0, "hll_sketch": "", "theta_sketch": "",
            "buckets": "null", "updated_at": ms(updated_at or start + timedelta(seconds=3))}


class FakeLayer:
    """A layer's rows; answers the range it is asked like the engine (`faithful`), or everything (a leak)."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, faithful: bool = True, truncated: bool = False,
                 error: Exception | None = None) -> None:
        self.rows = rows or []
        self.faithful = faithful
        self.truncated = truncated
        self.error = error
        self.calls: list[tuple[str, str, datetime, datetime]] = []

    def minute_rows(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        self.calls.append((tenant_id, metric, start, end))
        if self.error is not None:
            raise self.error
        picked = []
        for row in self.rows:
            at = row["window_start"]
            at = at if isinstance(at, datetime) else datetime.fromtimestamp(at / 1000, UTC)
            if row["tenant_id"] == tenant_id and row["metric"] == metric and (
                    not self.faithful or start <= at < end):
                picked.append(row)
        return MinuteRows(picked, self.truncated)

    def minute_totals(self, tenant_id: str, metric: str, start: datetime, end: datetime) -> MinuteRows:
        """As an engine sums the current rows per minute (the newest version of each dimension tuple)."""
        self.totals_calls = getattr(self, "totals_calls", 0) + 1
        current: dict[tuple[str, Any], dict[str, Any]] = {}
        for row in self.minute_rows(tenant_id, metric, start, end).rows:
            key = (row["dims_key"], row["window_start"])
            if key not in current or row["updated_at"] > current[key]["updated_at"]:
                current[key] = row
        minutes: dict[Any, dict[str, Any]] = {}
        for row in current.values():
            total = minutes.setdefault(row["window_start"], {
                "tenant_id": tenant_id, "metric": metric, "window_start": row["window_start"], "count": 0,
                "sum": None, "updated_at": row["updated_at"]})
            total["count"] += row["count"]
            if row["sum"] is not None:
                total["sum"] = (total["sum"] or 0.0) + row["sum"]
            total["updated_at"] = max(total["updated_at"], row["updated_at"])
        return MinuteRows([totals_row(r) for r in minutes.values()], self.truncated)


class FakeSeam:
    def __init__(self, at: datetime | None = SEAM, error: Exception | None = None) -> None:
        self.at, self.error = at, error

    def current(self) -> datetime | None:
        if self.error is not None:
            raise self.error
        return self.at


@pytest.fixture
def settings() -> Settings:
    return Settings(mode="local", auth_jwt_secret=SecretStr(SECRET), auth_jwt_issuer="lakepulse-local",
                    auth_jwt_audience="lakepulse")


@pytest.fixture
def batch() -> FakeLayer:
    """Batch rows (Trino's shapes) of tenants t-a and t-b, every minute 09:00–11:00: 2 orders, 10.0 each."""
    rows = []
    for i in range(120):
        at = T9 + i * MINUTE
        rows += [trino_row("t-a", "orders_placed", at, 2), trino_row("t-a", "gross_sales", at, 2, 20.0),
                 trino_row("t-b", "orders_placed", at, 50)]
    return FakeLayer(rows)


@pytest.fixture
def speed() -> FakeLayer:
    """Speed rows (Pinot's shapes) for the same minutes: 3 orders, 30.0; a superseded version of 10:30 too."""
    rows = []
    for i in range(120):
        at = T9 + i * MINUTE
        rows += [pinot_row("t-a", "orders_placed", at, 3), pinot_row("t-a", "gross_sales", at, 3, 30.0),
                 pinot_row("t-b", "orders_placed", at, 70)]
    stale = T9 + 90 * MINUTE
    rows.append(pinot_row("t-a", "orders_placed", stale, 99, updated_at=stale - timedelta(seconds=30)))
    return FakeLayer(rows)


@pytest.fixture
def seam() -> FakeSeam:
    return FakeSeam()


def build_app(settings: Settings, batch: Any, speed: Any, seam: Any) -> FastAPI:
    app = create_app(settings)
    app.dependency_overrides[get_batch_source] = lambda: batch
    app.dependency_overrides[get_speed_source] = lambda: speed
    app.dependency_overrides[get_seam_source] = lambda: seam
    return app


@pytest.fixture
def client(settings: Settings, batch: FakeLayer, speed: FakeLayer, seam: FakeSeam) -> Iterator[TestClient]:
    with TestClient(build_app(settings, batch, speed, seam)) as test_client:
        yield test_client


def bearer(settings: Settings, tenant: str | None = None, role: str | None = None, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, role=role, **kwargs)}"}


def series(client: TestClient, headers: dict[str, str], metric: str = "orders_placed", **params: Any) -> Any:
    query = {"from": "2026-03-02T09:00:00Z", "to": "2026-03-02T11:00:00Z", "granularity": "1m", **params}
    return client.get(SERIES.format(quote(metric, safe="")), params=query, headers=headers)


def assert_no_engine_text(body: str) -> None:
    for word in ENGINE_WORDS:
        assert word not in body, f"{word!r} reached the client: {body}"


# --- authentication and tenancy ---------------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(client: TestClient, batch: FakeLayer) -> None:
    response = series(client, {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in response.json()["detail"]
    assert batch.calls == []


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-jwt",
    "Basic dXNlcjpwYXNz",
    "Bearer " + "a" * 10_000,
    "Bearer",
])
def test_a_bad_token_is_401(client: TestClient, authorization: str) -> None:
    response = series(client, {"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_signed_with_another_secret_or_expired_is_401(client: TestClient, settings: Settings) -> None:
    other = settings.model_copy(update={"auth_jwt_secret": SecretStr("another-secret-that-is-long-enough-too")})
    forged = series(client, bearer(other, "t-a"))
    assert (forged.status_code, forged.json()) == (401, {"detail": "token signature does not verify"})
    expired = bearer(settings, "t-a", ttl=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
    response = series(client, expired)
    assert (response.status_code, response.json()) == (401, {"detail": "token has expired"})


def test_tenant_a_naming_tenant_b_is_403_and_reads_nothing(client: TestClient, settings: Settings,
                                                           batch: FakeLayer, speed: FakeLayer) -> None:
    response = series(client, bearer(settings, "t-a"), tenant="t-b")
    assert response.status_code == 403
    assert response.json() == {"detail": "this token may read only its own tenant"}
    assert batch.calls == speed.calls == []


def test_a_tenant_token_reads_its_own_tenant_named_or_not(client: TestClient, settings: Settings) -> None:
    implicit = series(client, bearer(settings, "t-a"))
    named = series(client, bearer(settings, "t-a"), tenant="t-a")
    assert implicit.status_code == named.status_code == 200
    assert implicit.json() == named.json()
    assert implicit.json()["tenant"] == "t-a"


def test_an_analyst_names_a_tenant_and_reads_only_it(client: TestClient, settings: Settings, batch: FakeLayer,
                                                     speed: FakeLayer) -> None:
    response = series(client, bearer(settings, role="analyst"), tenant="t-b")
    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == "t-b"
    assert {call[0] for call in batch.calls + speed.calls} == {"t-b"}
    # t-b has 50 orders a minute in the batch layer and 70 in the speed layer.
    assert {w["count"] for w in body["windows"] if w["layer"] == "batch"} == {50}
    assert {w["count"] for w in body["windows"] if w["layer"] == "speed"} == {70}


def test_an_analyst_without_a_tenant_is_400(client: TestClient, settings: Settings) -> None:
    response = series(client, bearer(settings, role="admin"))
    assert response.status_code == 400
    assert "name one with the tenant parameter" in response.json()["detail"]


# --- the series across the seam ---------------------------------------------------------------------------


def test_the_series_takes_minutes_before_the_seam_from_batch_and_the_rest_from_speed(
        client: TestClient, settings: Settings, batch: FakeLayer, speed: FakeLayer) -> None:
    response = series(client, bearer(settings, "t-a"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["metric"], body["kind"], body["granularity"], body["truncated"]) == ("orders_placed", "count",
                                                                                     "1m", False)
    assert body["seam"] == "2026-03-02T10:07:00+00:00"
    windows = body["windows"]
    assert len(windows) == 120  # every minute once, no gap
    assert [w["start"] for w in windows] == [(T9 + i * MINUTE).isoformat() for i in range(120)]
    before = [w for w in windows if w["start"] < body["seam"]]
    after = [w for w in windows if w["start"] >= body["seam"]]
    assert len(before) == 67 and len(after) == 53
    assert all((w["count"], w["value"], w["layer"], w["final"]) == (2, 2, "batch", True) for w in before)
    # The superseded speed version of 10:30 (99 orders) is not counted: the newest row of a key wins.
    assert all((w["count"], w["value"], w["layer"], w["final"]) == (3, 3, "speed", False) for w in after)
    # Each layer was asked for its own span only.
    assert batch.calls == [("t-a", "orders_placed", T9, SEAM)]
    assert speed.calls == [("t-a", "orders_placed", SEAM, T9 + 120 * MINUTE)]
    # Freshness: the newest update among the speed rows read (10:59's row, updated 3 s after its start).
    assert body["freshness"] == "2026-03-02T10:59:03+00:00"


def test_a_window_holding_the_seam_is_mixed_and_not_final(client: TestClient, settings: Settings) -> None:
    body = series(client, bearer(settings, "t-a"), "gross_sales", granularity="15m").json()
    by_start = {w["start"]: w for w in body["windows"]}
    assert len(by_start) == 8
    seam_window = by_start["2026-03-02T10:00:00+00:00"]
    # 10:00–10:06 from batch (7 × 20.0), 10:07–10:14 from speed (8 × 30.0).
    assert (seam_window["layer"], seam_window["final"]) == ("mixed", False)
    assert (seam_window["count"], seam_window["value"], seam_window["sum"]) == (7 * 2 + 8 * 3, 380.0, 380.0)
    assert by_start["2026-03-02T09:45:00+00:00"] == {
        "start": "2026-03-02T09:45:00+00:00", "end": "2026-03-02T10:00:00+00:00", "group": {}, "value": 300.0,
        "count": 30, "sum": 300.0, "layer": "batch", "final": True}
    assert by_start["2026-03-02T10:45:00+00:00"]["layer"] == "speed"
    assert sum(w["value"] for w in body["windows"]) == 67 * 20.0 + 53 * 30.0


def test_layers_that_return_rows_outside_their_span_still_count_each_minute_once(settings: Settings) -> None:
    rows_b = [trino_row("t-a", "orders_placed", T9 + i * MINUTE, 2) for i in range(120)]
    rows_s = [pinot_row("t-a", "orders_placed", T9 + i * MINUTE, 3) for i in range(120)]
    app = build_app(settings, FakeLayer(rows_b, faithful=False), FakeLayer(rows_s, faithful=False), FakeSeam())
    with TestClient(app) as client:
        body = series(client, bearer(settings, "t-a"), granularity="1h").json()
    assert [(w["count"], w["layer"]) for w in body["windows"]] == [(120, "batch"), (7 * 2 + 53 * 3, "mixed")]


def test_no_seam_yet_means_the_speed_layer_serves_everything(settings: Settings, batch: FakeLayer,
                                                              speed: FakeLayer) -> None:
    with TestClient(build_app(settings, batch, speed, FakeSeam(None))) as client:
        body = series(client, bearer(settings, "t-a"), granularity="1h").json()
    assert body["seam"] is None
    assert [(w["count"], w["layer"], w["final"]) for w in body["windows"]] == [(180, "speed", False)] * 2
    assert batch.calls == []


def test_group_by_and_filters_in_a_timezone(settings: Settings) -> None:
    rows = [trino_row("t-a", "orders_placed", T9 + i * MINUTE, 1, dims={"country": c, "channel": "app"})
            for i in range(60) for c in ("DE", "FR")]
    rows += [trino_row("t-a", "orders_placed", T9, 5, dims={"country": "DE", "channel": "web"})]
    with TestClient(build_app(settings, FakeLayer(rows), FakeLayer(), FakeSeam())) as client:
        response = client.get(SERIES.format("orders_placed"), headers=bearer(settings, "t-a"), params=[
            ("from", "2026-03-02T10:00:00+01:00"), ("to", "2026-03-02T11:00:00 01:00"),  # an unencoded '+'
            ("granularity", "1h"), ("timezone", "Europe/Berlin"), ("group_by", "country"),
            ("filter", "channel:app")])
    body = response.json()
    assert response.status_code == 200, body
    assert body["timezone"] == "Europe/Berlin" and body["start"] == "2026-03-02T10:00:00+01:00"
    assert sorted((w["group"]["country"], w["count"]) for w in body["windows"]) == [("DE", 60), ("FR", 60)]


def test_a_layer_hitting_its_row_cap_marks_the_answer_truncated(settings: Settings, batch: FakeLayer,
                                                                 speed: FakeLayer) -> None:
    speed.truncated = True
    with TestClient(build_app(settings, batch, speed, FakeSeam())) as client:
        assert series(client, bearer(settings, "t-a")).json()["truncated"] is True


# --- 400s ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "params", "reason"), [
    ("no_such_metric", {}, "unknown metric 'no_such_metric'"),
    ("orders_placed", {"filter": "colour:red"}, "unknown filter dimension 'colour'"),
    ("orders_placed", {"filter": "country"}, "filter must be dimension:value"),
    ("orders_placed", {"filter": ["country:DE", "country:FR"]}, "at most one filter"),
    ("orders_placed", {"group_by": "colour"}, "unknown group_by dimension 'colour'"),
    ("orders_completed", {"group_by": "country"}, "its dimensions: none"),
    ("orders_placed", {"group_by": ["country", "channel", "device"]}, "at most 2 different dimensions"),
    ("orders_placed", {"granularity": "2m"}, "granularity must be one of 1m, 5m, 15m, 1h, 1d"),
    ("orders_placed", {"from": "0001-01-01T00:00:00Z", "to": "8999-01-01T00:00:00Z"}, "must lie between"),
    ("orders_placed", {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "more than 10080 windows"),
    ("orders_placed", {"from": "2026-03-02T11:00:00Z", "to": "2026-03-02T09:00:00Z"}, "start must be before end"),
    ("orders_placed", {"from": "2026-03-02T09:00:00"}, "from needs a UTC offset"),
    ("orders_placed", {"to": "yesterday"}, "to must be an RFC 3339 time"),
    ("orders_placed", {"to": "9999-12-31T23:59:59-23:59"}, "to is out of range"),
    ("orders_placed", {"timezone": "Mars/Olympus_Mons"}, "unknown timezone"),
    ("orders_placed", {"timezone": "../../etc/passwd"}, "unknown timezone"),
    ("orders_placed", {"max_groups": 0}, "max_groups"),
    ("orders_placed", {"max_groups": "many"}, "max_groups"),
    ("orders_placed", {"tenant": "t a"}, "tenant must be"),
])
def test_requests_the_api_refuses_are_400_with_a_reason(client: TestClient, settings: Settings, batch: FakeLayer,
                                                        metric: str, params: dict[str, Any], reason: str) -> None:
    response = series(client, bearer(settings, role="analyst"), metric, **{"tenant": "t-a", **params})
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    assert batch.calls == []


def test_missing_parameters_are_400(client: TestClient, settings: Settings) -> None:
    response = client.get(SERIES.format("orders_placed"), headers=bearer(settings, "t-a"))
    assert response.status_code == 400
    assert "from" in response.json()["detail"] and "to" in response.json()["detail"]


# --- engine failures ----------------------------------------------------------------------------------------


class RaisingCursor:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def execute(self, *args: Any, **kwargs: Any) -> None:
        raise self.error

    def close(self) -> None:
        pass


class RaisingConnection:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def cursor(self) -> RaisingCursor:
        return RaisingCursor(self.error)


def test_engine_failures_are_503_with_no_engine_text(settings: Settings, batch: FakeLayer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The real readers, with their connections failing the way the clients fail (messages quoting the SQL).
    speed_source = SpeedSource(settings)
    monkeypatch.setattr(speed_source, "_connection", lambda: RaisingConnection(pinotdb.DatabaseError(
        "Query\n\nSELECT * FROM metrics_minute WHERE tenant_id = 't-a' timed out: broker 127.0.0.1:8099")))
    batch_source = BatchSource(settings)
    monkeypatch.setattr(batch_source, "_connection", lambda: RaisingConnection(trino.exceptions.TrinoConnectionError(
        "Trino: SELECT hll_sketch FROM delta.lakepulse.metrics_minute: Exception at io.trino.Foo")))
    for app in (build_app(settings, batch, speed_source, FakeSeam()),
                build_app(settings, batch_source, FakeLayer(), FakeSeam()),
                build_app(settings, batch, FakeLayer(), FakeSeam(error=SourceUnavailable("seam (batch layer state)")))):
        with TestClient(app) as client:
            response = series(client, bearer(settings, "t-a"))
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert response.json()["detail"].endswith("is unavailable right now; try again shortly")
            assert_no_engine_text(response.text)
            assert "lakepulse_api_source_errors_total" in client.get("/metrics").text


def test_an_unexpected_error_is_500_without_internals(settings: Settings, speed: FakeLayer) -> None:
    broken = FakeLayer(error=RuntimeError("SELECT secret FROM metrics_minute -- Traceback"))
    with TestClient(build_app(settings, broken, speed, FakeSeam()), raise_server_exceptions=False) as client:
        response = series(client, bearer(settings, "t-a"))
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error; it has been logged"}
        assert_no_engine_text(response.text)
        metrics = client.get("/metrics").text
    assert 'lakepulse_api_requests_total{method="GET",route="/v1/metrics/{metric}/series",status="500"} 1.0' in metrics


# --- hostile input ------------------------------------------------------------------------------------------

HOSTILE = ["'", "\"", "'; DROP TABLE orders; --", "' OR '1'='1", "%(tenant_id)s", "*", "\\", "\x00",
           "ünïcødé ☃ 日本語 🍕", "\u202e\u0000\ufeff", "x" * 10_000, "𝕏" * 3000]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("where", ["metric", "tenant", "timezone", "granularity", "group_by", "filter_name",
                                   "from", "to", "max_groups"])
def test_hostile_strings_are_4xx_never_5xx(client: TestClient, settings: Settings, batch: FakeLayer,
                                           speed: FakeLayer, where: str, value: str) -> None:
    params: dict[str, Any] = {"tenant": "t-a"}
    metric = "orders_placed"
    if where == "metric":
        metric = value
    elif where == "filter_name":
        params["filter"] = f"{value}:DE"
    else:
        params[where] = value
    response = series(client, bearer(settings, role="analyst"), metric, **params)
    assert 400 <= response.status_code < 500, (where, response.status_code, response.text[:200])
    assert isinstance(response.json()["detail"], str)
    assert len(response.content) < 2_000  # a 10 kB value is not echoed back
    assert_no_engine_text(response.text)
    assert batch.calls == speed.calls == []


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_filter_values_match_nothing_or_are_refused(client: TestClient, settings: Settings,
                                                            speed: FakeLayer, value: str) -> None:
    response = series(client, bearer(settings, "t-a"), filter=f"country:{value}", granularity="1h")
    assert response.status_code in (200, 400), response.text[:200]
    if response.status_code == 200:  # a value is compared, never run: it matches no row
        assert [w["count"] for w in response.json()["windows"]] == [0, 0]
    assert {call[0] for call in speed.calls} <= {"t-a"}


def test_hostile_tenant_claims_never_reach_a_reader(client: TestClient, settings: Settings,
                                                    batch: FakeLayer) -> None:
    # mint_token refuses such tenants; a token with one (signed with the right secret) must be refused too.
    import jwt

    now = datetime.now(UTC)
    for tenant in ("t-a'; DROP TABLE x; --", "t-a\n", "", "x" * 65):
        token = jwt.encode({"iss": "lakepulse-local", "aud": "lakepulse", "sub": "s", "iat": now,
                            "exp": now + timedelta(minutes=5), "tenant_id": tenant}, SECRET, algorithm="HS256")
        response = series(client, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert batch.calls == []


# --- service endpoints, catalog, OpenAPI --------------------------------------------------------------------


def test_health_and_metrics_answer_without_a_token(client: TestClient, settings: Settings) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    series(client, bearer(settings, "t-a"))
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lakepulse_api_requests_total{method="GET",route="/v1/metrics/{metric}/series",status="200"} 1.0' in text
    assert 'lakepulse_api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'lakepulse_api_request_duration_seconds_count{route="/health",status="200"} 1.0' in text


def test_the_catalog_lists_metrics_with_kind_unit_and_dimensions(client: TestClient, settings: Settings) -> None:
    assert client.get("/v1/catalog").status_code == 401
    body = client.get("/v1/catalog", headers=bearer(settings, "t-a")).json()
    metrics = {m["name"]: m for m in body["metrics"]}
    assert metrics["gross_sales"] == {"name": "gross_sales", "kind": "sum", "unit": "currency",
                                      "description": "Sum of order amounts at placement, in the tenant's currency.",
                                      "dimensions": ["channel", "country"]}
    assert metrics["active_users"]["kind"] == "distinct"
    assert body["granularities"] == ["1m", "5m", "15m", "1h", "1d"]


def test_the_openapi_document_declares_bearer_auth_and_the_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operation = doc["paths"]["/v1/metrics/{metric}/series"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"metric", "from", "to", "granularity", "timezone",
                                                            "group_by", "filter", "tenant", "max_groups"}
    assert {"200", "400", "401", "403", "503"} <= set(operation["responses"])
    assert client.get("/docs").status_code == 200


# --- the engine readers without engines ---------------------------------------------------------------------


class RecordingCursor:
    def __init__(self, names: list[str], rows: list[list[Any]]) -> None:
        self.description = [(n, None) for n in names]
        self.rows = rows
        self.executed: list[tuple[Any, ...]] = []
        self.query_options: list[str | None] = []

    def execute(self, sql: str, params: Any = None, queryOptions: str | None = None) -> None:  # noqa: N803
        self.executed.append((sql, params))
        self.query_options.append(queryOptions)

    def fetchall(self) -> list[list[Any]]:
        return self.rows

    def close(self) -> None:
        pass


class RecordingConnection:
    def __init__(self, cursor: RecordingCursor) -> None:
        self._cursor = cursor

    def cursor(self) -> RecordingCursor:
        return self._cursor


def test_the_batch_reader_binds_every_value_and_prunes_by_date(settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = RecordingCursor(["tenant_id", "count"], [["t-a", 1], ["t-a", 2], ["t-a", 3]])
    source = BatchSource(settings, max_rows=2)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    start, end = datetime(2026, 3, 1, 23, 0, tzinfo=UTC), datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    result = source.minute_rows("t-a", "orders_placed", start, end)
    assert result == MinuteRows([{"tenant_id": "t-a", "count": 1}, {"tenant_id": "t-a", "count": 2}], True)
    (sql, params), = cursor.executed
    assert params == ["t-a", "orders_placed", "2026-03-01", "2026-03-02", start, end]
    assert "t-a" not in sql and "orders_placed" not in sql
    assert "FROM delta.lakepulse.metrics_minute WHERE tenant_id = ? AND metric = ?" in sql
    assert "window_date >= ? AND window_date <= ? AND window_start >= ? AND window_start < ?" in sql
    assert "sketch" not in sql and sql.endswith("LIMIT 3")  # a count metric: see the test below


def test_the_speed_reader_binds_values_through_pinotdb(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    cursor = RecordingCursor(["tenant_id"], [["t-a"]])
    source = SpeedSource(settings, timeout_s=4.0)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    start, end = datetime(2026, 3, 2, 10, 7, tzinfo=UTC), datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert source.minute_rows("t-a", "orders_placed", start, end) == MinuteRows([{"tenant_id": "t-a"}], False)
    (sql, params), = cursor.executed
    assert cursor.query_options == ["timeoutMs=4000"]
    assert "t-a" not in sql
    # What pinotdb sends: the values quoted or as digits, the times as epoch milliseconds, the cap plus one.
    sent = apply_parameters(sql, params)
    assert ("WHERE tenant_id = 't-a' AND metric = 'orders_placed' AND window_start >= 1772446020000 "
            "AND window_start < 1772449200000 LIMIT 100001") in sent
    assert 'CAST("updated_at" AS LONG) AS "updated_at"' in sent


@pytest.mark.parametrize("reader", ["batch", "speed"])
@pytest.mark.parametrize(("metric", "sketches"), [("active_users", True), ("orders_placed", False),
                                                  ("gross_sales", False), ("prep_time_seconds", False)])
def test_the_readers_select_sketch_columns_only_for_distinct_counts(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, reader: str, metric: str, sketches: bool) -> None:
    # A sketch column costs the broker even where it is null (lakepulse.api.sources.needs_sketches).
    cursor = RecordingCursor([], [])
    source = BatchSource(settings) if reader == "batch" else SpeedSource(settings)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    source.minute_rows("t-a", metric, T9, SEAM)
    (sql, _), = cursor.executed
    assert ('"hll_sketch"' in sql and '"theta_sketch"' in sql) is sketches
    assert ("sketch" in sql) is sketches
    assert '"buckets"' in sql and '"count"' in sql and '"dims"' in sql


@pytest.mark.parametrize("reader", ["batch", "speed"])
@pytest.mark.parametrize(("tenant", "metric"), [
    ("t-a'; DROP TABLE metrics_minute; --", "orders_placed"), ("*", "orders_placed"), ("", "orders_placed"),
    ("t-a", "orders_placed' OR '1'='1"), ("t-a", "*"),
])
def test_the_readers_refuse_unchecked_values_before_any_sql(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                            reader: str, tenant: str, metric: str) -> None:
    cursor = RecordingCursor([], [])
    source = BatchSource(settings) if reader == "batch" else SpeedSource(settings)
    monkeypatch.setattr(source, "_connection", lambda: RecordingConnection(cursor))
    with pytest.raises(ValueError):
        source.minute_rows(tenant, metric, T9, SEAM)
    assert cursor.executed == []


def test_the_seam_is_cached_and_a_stale_one_bridges_a_short_outage(settings: Settings) -> None:
    now = [0.0]
    reads: list[datetime | None] = [SEAM, SEAM + timedelta(hours=1)]
    calls = []

    def reader() -> datetime | None:
        calls.append(now[0])
        if not reads:
            raise SourceUnavailable("seam (batch layer state)")
        return reads.pop(0)

    seam = SeamSource(settings, ttl_s=5, max_stale_s=60, reader=reader, clock=lambda: now[0])
    assert seam.current() == SEAM
    now[0] = 4.9
    assert seam.current() == SEAM and calls == [0.0]  # cached
    now[0] = 5.0
    assert seam.current() == SEAM + timedelta(hours=1)
    now[0] = 30.0  # S3 fails: the value read 25 s ago still serves
    assert seam.current() == SEAM + timedelta(hours=1)
    now[0] = 32.0  # and the failure is not retried on every request
    assert seam.current() == SEAM + timedelta(hours=1) and calls == [0.0, 5.0, 30.0]
    now[0] = 66.0  # more than a minute since the last good read: 503
    with pytest.raises(SourceUnavailable):
        seam.current()


def test_an_unreachable_seam_store_is_source_unavailable(settings: Settings) -> None:
    # Port 9 on loopback (discard) has no listener here: refused at once, no retry.
    unreachable = settings.model_copy(update={"s3_endpoint": "http://127.0.0.1:9"})
    with pytest.raises(SourceUnavailable, match="seam"):
        SeamSource(unreachable, timeout_s=1.0).current()


def test_the_readers_totals_sum_per_minute_in_the_engine_with_the_same_binding(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    start, end = datetime(2026, 3, 2, 10, 7, tzinfo=UTC), datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    # The broker types the grouped CAST as STRING.
    cursor = RecordingCursor(["tenant_id", "metric", "minute_ms", "count", "sum", "updated_at"],
                             [["t-a", "orders_placed", str(ms(start)), 7.0, 0.0, ms(start) + 5000.0]])
    speed = SpeedSource(settings)
    monkeypatch.setattr(speed, "_connection", lambda: RecordingConnection(cursor))
    (row,) = speed.minute_totals("t-a", "orders_placed", start, end).rows
    assert (row["dims_key"], row["dims"], row["window_start"], row["window_end"]) == ("", {}, ms(start),
                                                                                      ms(start) + 60_000)
    assert "minute_ms" not in row
    (sql, params), = cursor.executed
    sent = apply_parameters(sql, params)
    assert "GROUP BY tenant_id, metric, CAST(window_start AS LONG)" in sent
    assert "WHERE tenant_id = 't-a' AND metric = 'orders_placed' AND window_start >= 1772446020000" in sent
    batch_cursor = RecordingCursor(["tenant_id", "metric", "window_start", "count", "sum", "updated_at"],
                                   [["t-a", "orders_placed", start, 7, None, start]])
    batch = BatchSource(settings)
    monkeypatch.setattr(batch, "_connection", lambda: RecordingConnection(batch_cursor))
    (row,) = batch.minute_totals("t-a", "orders_placed", start, end).rows
    assert row["window_end"] == start + MINUTE
    (sql, params), = batch_cursor.executed
    assert "GROUP BY tenant_id, metric, window_start" in sql and "t-a" not in sql
    assert params[:2] == ["t-a", "orders_placed"]
    with pytest.raises(ValueError):
        batch.minute_totals("t-a'; --", "orders_placed", start, end)


@pytest.mark.parametrize(("metric", "params", "totals"), [
    ("orders_placed", {}, True), ("gross_sales", {}, True), ("food_rating", {}, True),
    ("orders_placed", {"group_by": "country"}, False), ("orders_placed", {"filter": "country:DE"}, False),
    ("active_users", {}, False), ("prep_time_seconds", {}, False),
])
def test_engines_add_dimension_tuples_only_when_nothing_needs_them(
        settings: Settings, batch: FakeLayer, speed: FakeLayer, seam: FakeSeam, metric: str, params: dict[str, str],
        totals: bool) -> None:
    with TestClient(build_app(settings, batch, speed, seam)) as client:
        answer = series(client, bearer(settings, tenant="t-a"), metric, **params)
    assert answer.status_code == 200, answer.text
    assert (getattr(speed, "totals_calls", 0) > 0) == totals


def test_totals_and_rows_give_the_same_series(settings: Settings, batch: FakeLayer, speed: FakeLayer,
                                              seam: FakeSeam) -> None:
    with TestClient(build_app(settings, batch, speed, seam)) as client:
        own = bearer(settings, tenant="t-a")
        by_totals = series(client, own, "gross_sales").json()
        by_rows = series(client, own, "gross_sales", filter="channel:").json()  # a filter forces the row path
    assert by_totals["windows"] == by_rows["windows"]
