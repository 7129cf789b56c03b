"""Every RFC 3339 form the ingest contract accepts becomes the same instant in Spark: none is dropped."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from lakepulse.aggregations import filter_valid_events, with_normalized_events, with_parsed_events
from lakepulse.events import validate_event

pytestmark = pytest.mark.spark

# (as sent, UTC instant); each is accepted by the ingest API's validation.
FORMS = [
    ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01t12:30:00z", datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01 12:30:00Z", datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01T12:30:00.123456789Z", datetime(2024, 5, 1, 12, 30, 0, 123456)),
    ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01T09:00:00.5-03:30", datetime(2024, 5, 1, 12, 30, 0, 500000)),
]


def _event(i: int, occurred_at: str) -> dict[str, object]:
    return {"event_id": f"e{i}", "tenant_id": "t1", "event_type": "app_error", "occurred_at": occurred_at,
            "source": "test", "properties": {"service": "api", "code": "E1"}}


def test_the_contract_accepts_every_form() -> None:
    for i, (text, _) in enumerate(FORMS):
        assert validate_event(_event(i, text)).tenant_id == "t1"


def test_kafka_json_keeps_every_accepted_form(spark) -> None:  # type: ignore[no-untyped-def]
    raw = [(json.dumps({**_event(i, text), "received_at": text}),) for i, (text, _) in enumerate(FORMS)]
    rows = filter_valid_events(with_parsed_events(spark.createDataFrame(raw, "value string"))).collect()
    got = {r.event_id: (r.occurred_at, r.received_at) for r in rows}
    assert got == {f"e{i}": (instant, instant) for i, (_, instant) in enumerate(FORMS)}


def test_unreadable_time_is_null_not_an_error(spark) -> None:  # type: ignore[no-untyped-def]
    raw = [(json.dumps(_event(0, "not a time")),)]
    rows = with_parsed_events(spark.createDataFrame(raw, "value string")).collect()
    assert rows[0].occurred_at is None and rows[0].event_id == "e0"


def test_landing_with_string_times_reads_every_form(spark) -> None:  # type: ignore[no-untyped-def]
    landed = spark.createDataFrame(
        [(f"e{i}", "t1", "app_error", text, text, "test", "{}") for i, (text, _) in enumerate(FORMS)],
        "event_id string, tenant_id string, event_type string, occurred_at string, received_at string, "
        "source string, properties string",
    )
    got = {r.event_id: r.occurred_at for r in with_normalized_events(landed).collect()}
    assert got == {f"e{i}": instant for i, (_, instant) in enumerate(FORMS)}
