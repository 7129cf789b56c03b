"""Event-time sanity at ingest (pure): how far `occurred_at` may be ahead of the server's clock or behind it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lakepulse.events import (
    OCCURRED_AT_IN_FUTURE,
    OCCURRED_AT_TOO_OLD,
    event_time_problem,
    span_text,
    validate_event,
)
from lakepulse.ingest.processing import EventRules
from lakepulse.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SKEW_S = 300.0
HORIZON_DAYS = 30.0


def problem(occurred_at: datetime, max_age_days: float | None = HORIZON_DAYS) -> str | None:
    return event_time_problem(occurred_at, NOW, SKEW_S, max_age_days)


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(0),
        timedelta(seconds=SKEW_S),  # exactly the skew ahead: still allowed
        timedelta(seconds=-1),
        -timedelta(days=HORIZON_DAYS),  # exactly at the horizon: still allowed
    ],
)
def test_times_within_the_skew_and_the_horizon_are_accepted(offset: timedelta) -> None:
    assert problem(NOW + offset) is None


def test_more_than_the_skew_ahead_is_refused_with_the_times_and_the_limit() -> None:
    reason = problem(NOW + timedelta(seconds=SKEW_S + 1))
    assert reason == (
        "occurred_at_in_future: occurred_at 2026-12-01T12:05:01.000Z is 301 s ahead of the server clock "
        "(2026-12-01T12:00:00.000Z); at most 300 s is allowed: check the producer's clock"
    )


def test_the_2099_event_of_the_issue_is_refused() -> None:
    reason = problem(datetime(2099, 1, 1, tzinfo=UTC))
    assert reason is not None and reason.startswith(f"{OCCURRED_AT_IN_FUTURE}: occurred_at 2099-01-01T00:00:00.000Z")
    assert "26328.5 days ahead" in reason


def test_older_than_the_horizon_is_refused_and_no_horizon_accepts_any_past() -> None:
    old = NOW - timedelta(days=HORIZON_DAYS, seconds=1)
    assert problem(old) == (
        "occurred_at_too_old: occurred_at 2026-11-01T11:59:59.000Z is 30.0 days old; events older than 30 days "
        "are refused"
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (problem(epoch) or "").startswith(f"{OCCURRED_AT_TOO_OLD}: occurred_at 1970-01-01T00:00:00.000Z")
    assert problem(epoch, max_age_days=None) is None


def test_zones_are_compared_as_instants() -> None:
    # 13:04 at +01:00 is 12:04 UTC: 4 minutes ahead, allowed; 17:06 at +05:00 is 12:06 UTC: refused.
    assert problem(datetime(2026, 12, 1, 13, 4, tzinfo=timezone(timedelta(hours=1)))) is None
    ahead = problem(datetime(2026, 12, 1, 17, 6, tzinfo=timezone(timedelta(hours=5))))
    assert ahead is not None and "2026-12-01T12:06:00.000Z is 360 s ahead" in ahead


@pytest.mark.parametrize(
    ("text", "code"),
    [("0001-01-01T00:00:00+01:00", OCCURRED_AT_TOO_OLD), ("9999-12-31T23:59:59-01:00", OCCURRED_AT_IN_FUTURE)],
)
def test_times_whose_utc_is_outside_datetime_get_a_reason_not_an_error(text: str, code: str) -> None:
    event = validate_event({"tenant_id": "t", "event_type": "x", "occurred_at": text, "source": "s"})
    reason = problem(event.occurred_at)
    assert reason is not None and reason.startswith(f"{code}: occurred_at {text} is ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45 s"), (599, "599 s"), (720, "12 min"), (5 * 3600, "5 h"), (3.2 * 86400, "3.2 days"), (-90, "90 s")],
)
def test_span_text(seconds: float, text: str) -> None:
    assert span_text(seconds) == text


def test_rules_come_from_the_settings_and_none_checks_nothing() -> None:
    rules = EventRules.from_settings(Settings(event_max_future_skew_s=60, event_max_age_days=None))
    assert (rules.max_future_skew_s, rules.max_age_days) == (60, None)
    assert (rules.time_problem(NOW + timedelta(seconds=61), NOW) or "").startswith(OCCURRED_AT_IN_FUTURE)
    assert rules.time_problem(datetime(1970, 1, 1, tzinfo=UTC), NOW) is None
    defaults = EventRules.from_settings(Settings())
    assert (defaults.max_event_bytes, defaults.max_future_skew_s, defaults.max_age_days) == (900_000, 300, 30)
    assert EventRules().time_problem(datetime(2099, 1, 1, tzinfo=UTC), NOW) is None
    assert EventRules().too_large(10**9) is None
